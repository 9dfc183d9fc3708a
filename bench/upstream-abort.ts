// Benchmark of upstream abort (issue 3): over many cancels mid-stream, the time from
// the cancel request (POST /api/tasks/:id/cancel) to the upstream model server seeing
// its socket close, next to the same figure for a plain `fetch` abort straight to the
// upstream (the limit), and the tokens the upstream wrote after the cancel.
// The upstream is the fake OpenAI-compatible server of the tests, run in its own
// process like a real model server; times are compared on the absolute clock.
// Run: npm run bench:upstream-abort   (or: npx node bench/upstream-abort.ts [trials])

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startServer } from '../src/cli/serve.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import { nowAbs, startRemoteUpstream } from './upstream-client.ts';
import { fmt, header, row, summarize } from './lib.ts';

const TRIALS = Number(process.argv[2] ?? 200);
const dir = mkdtempSync(join(tmpdir(), 'leash-bench-ua-'));
const upstream = await startRemoteUpstream({ UPSTREAM_INTERVAL_MS: '5' });
let requests = 0;
const server = await startServer({
  host: '127.0.0.1',
  port: 0,
  db: join(dir, 'bench.db'),
  logger: pino({ level: 'silent' }),
  models: createModelRegistry({
    defaultModel: 'simulated',
    env: { OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: 'bench' },
  }),
  runtime: { maxRunningPerOwner: 16 },
});

header(`leash upstream-abort benchmark, ${TRIALS} cancels mid-stream`);
const viaLeash: number[] = [];
const direct: number[] = [];
let tokensAfter = 0;
let deltasAfterCancelling = 0;
try {
  for (let i = 0; i < TRIALS; i++) {
    // Through leash: a streamed generate against the upstream, read as SSE.
    const res = await fetch(`${server.url}/api/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        type: 'generate',
        input: { prompt: 'go', model: 'openai:bench' },
        stream: true,
        on_disconnect: 'continue',
      }),
    });
    const id = res.headers.get('x-task-id')!;
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let deltas = 0;
    let cancelling = false;
    const readAll = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += value;
        let sep: number;
        while ((sep = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, sep);
          buf = buf.slice(sep + 2);
          if (frame.includes('event: task.cancelling')) cancelling = true;
          else if (frame.includes('event: output.delta')) {
            deltas++;
            if (cancelling) deltasAfterCancelling++;
          }
        }
      }
    })();
    const index = requests++;
    await upstream.waitForRequests(requests);
    while (deltas < 3) await new Promise((r) => setTimeout(r, 1));
    const t0 = nowAbs();
    await fetch(`${server.url}/api/tasks/${id}/cancel`, { method: 'POST' });
    const closed = await upstream.waitForSocketClose(index);
    viaLeash.push(closed.closedAt - t0);
    tokensAfter += closed.tokensAfter;
    await readAll;

    // Reference: the same stream fetched straight from the upstream and aborted.
    const ac = new AbortController();
    const r2 = await fetch(`${upstream.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'x', stream: true, messages: [{ role: 'user', content: 'go' }] }),
      signal: ac.signal,
    });
    const rd = r2.body!.getReader();
    for (let k = 0; k < 3; k++) await rd.read();
    const index2 = requests++;
    await upstream.waitForRequests(requests);
    const t1 = nowAbs();
    ac.abort();
    direct.push((await upstream.waitForSocketClose(index2)).closedAt - t1);
    await rd.read().catch(() => {});
  }
  const a = summarize(viaLeash);
  const d = summarize(direct);
  row('reference: direct fetch abort → upstream socket closed p50', fmt(d.p50));
  row('reference: direct fetch abort → upstream socket closed p99', fmt(d.p99));
  row('leash cancel request → upstream socket closed p50', fmt(a.p50));
  row('leash cancel request → upstream socket closed p99', fmt(a.p99), '≤ 10 ms', a.p99 <= 10);
  row('  ratio to direct abort (p99)', `${(a.p99 / d.p99).toFixed(2)}×`, '≤ 1.5×', a.p99 / d.p99 <= 1.5);
  row('tokens the upstream wrote after a cancel (total)', String(tokensAfter), '0', tokensAfter === 0);
  row(
    'output.delta frames delivered after task.cancelling',
    String(deltasAfterCancelling),
    '0',
    deltasAfterCancelling === 0,
  );
} finally {
  await server.close({ graceMs: 0 });
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
}
