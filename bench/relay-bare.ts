// The least a relay can do, for bench/relay.ts to compare leash with on the same
// machine: a bare node:http server that forwards each POST to the upstream and, per
// SSE frame it reads, parses the chunk and writes one frame of its own to the client.
// No tasks, no persistence, no resume: the floor for "read a token, write a token"
// in one Node process. In its own process, like leash serve.
import http from 'node:http';

const upstream = process.argv[2]!;
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c));
  req.on('end', () => {
    const up = http.request(
      `${upstream}/chat/completions`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (ur) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        ur.setEncoding('utf8');
        let buf = '';
        ur.on('data', (chunk: string) => {
          buf += chunk;
          let cut: number;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            if (!frame.startsWith('data: ') || frame === 'data: [DONE]') continue;
            const chunkJson = JSON.parse(frame.slice(6)) as { choices: Array<{ delta: { content?: string } }> };
            const text = chunkJson.choices[0]?.delta.content;
            if (text) res.write(`event: output.delta\ndata: ${JSON.stringify({ text })}\n\n`);
          }
        });
        ur.on('end', () => res.end());
      },
    );
    res.on('close', () => {
      if (!res.writableFinished) up.destroy(); // the client left: stop the upstream
    });
    up.on('error', () => res.destroy());
    up.end(body);
  });
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address() as { port: number };
  process.send!({ ready: `http://127.0.0.1:${a.port}` });
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0)); // an orderly exit writes the --cpu-prof profile
