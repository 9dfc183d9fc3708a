// An OpenAI-compatible upstream for bench/relay.ts, in its own process. Each token
// is the absolute send time `<ms>|`, so a client can compute per-delta latency.
// The model name sets the pace: `relay-<tps>-<tokens>`; tps 0 = as fast as the
// socket takes them (backpressure respected).
import { createServer } from 'node:http';
import { nowMono } from './lib.ts';

const abs = nowMono; // comparable with the client's clock (bench/lib.ts)
const server = createServer((req, res) => {
  let raw = '';
  req.on('data', (c) => (raw += c));
  req.on('end', () => {
    const body = JSON.parse(raw || '{}') as { model?: string };
    const m = /relay-(\d+)-(\d+)/.exec(body.model ?? '') ?? ['', '20', '100'];
    const tps = Number(m[1]);
    const total = Number(m[2]);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let sent = 0;
    let gone = false;
    res.on('close', () => (gone = true));
    const chunk = (content: string): string =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: body.model, choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
    const finish = (): void => {
      res.write(
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: total, total_tokens: total + 1 } })}\n\n`,
      );
      res.end('data: [DONE]\n\n');
    };
    if (tps === 0) {
      const pump = (): void => {
        while (!gone && sent < total) {
          sent++;
          if (!res.write(chunk(`${abs().toFixed(3)}|`))) return void res.once('drain', pump);
        }
        if (!gone) finish();
      };
      pump();
    } else {
      const start = abs();
      const tick = (): void => {
        if (gone) return;
        sent++;
        res.write(chunk(`${abs().toFixed(3)}|`));
        if (sent >= total) return finish();
        setTimeout(tick, Math.max(0, start + (sent * 1000) / tps - abs()));
      };
      tick();
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number };
  process.send!({ ready: `http://127.0.0.1:${a.port}/v1` });
});
process.on('disconnect', () => process.exit(0));
