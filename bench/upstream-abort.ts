// Benchmark of upstream abort (issue 3): over many cancels mid-stream, the time from
// the cancel request to the upstream model server seeing its socket close, next to
// the same figure for a plain `fetch` abort straight to the upstream (the limit), and
// the tokens the upstream wrote after the cancel.
//
// Three processes, as in production: the fake OpenAI-compatible upstream of the tests
// (like a real model server), `leash serve` (SQLite file, `openai:` model pointed at
// the upstream) and this client. Times are compared on the system's monotonic clock.
// The cancel is sent three ways, in turn: `POST /api/tasks/:id/cancel` with node:http
// over a kept-alive connection, the same request written by hand on an open
// connection, and a `cancel` frame over an open WebSocket. Every leash stream is read
// as SSE, counting `output.delta` frames after `task.cancelling` (must be 0).
//
// Run: npm run bench:upstream-abort   (or: npx node bench/upstream-abort.ts [trials per path])

import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { fmt, header, row, summarize } from './lib.ts';
import { startServeProcess } from '../test/helpers/serve-process.ts';
import { nowAbs, startRemoteUpstream } from './upstream-client.ts';

const TRIALS = Number(process.argv[2] ?? 200);
if (!Number.isInteger(TRIALS) || TRIALS < 1)
  throw new Error(`trials must be a positive integer, got ${process.argv[2]}`);
const dir = mkdtempSync(join(tmpdir(), 'leash-bench-ua-'));
const upstream = await startRemoteUpstream({ UPSTREAM_INTERVAL_MS: '5' });

const server = await startServeProcess(
  'leash serve',
  {
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: 'bench',
    LEASH_MAX_RUNNING_PER_OWNER: '16',
    // The fake upstream's models must be allowed (LEASH_MODELS is an allowlist, #15).
    LEASH_MODELS: 'simulated*,openai:*',
  },
  { args: ['--db', join(dir, 'bench.db')] },
);
const url = server.url;

// The cancel's own connection is open before the clock starts: what is measured is
// leash, not a TCP handshake.
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const postCancel = (id: string): Promise<number> =>
  new Promise((resolve, reject) => {
    const r = httpRequest(`${url}/api/tasks/${id}/cancel`, { method: 'POST', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    r.on('error', reject);
    r.end();
  });
// The same request written by hand on an open connection: the clock then starts when
// the bytes go out, so what is measured is leash, not the HTTP client's own overhead
// (node:http builds a request object and writes on a later tick: ≈0.5 ms here).
const raw = connect(Number(new URL(url).port), '127.0.0.1');
const rawHost = new URL(url).host;
raw.setNoDelay(true);
await new Promise((resolve, reject) => raw.once('connect', resolve).once('error', reject));
let rawAnswer = '';
let rawAnswered: ((status: number) => void) | null = null;
raw.setEncoding('utf8');
raw.on('data', (d: string) => {
  rawAnswer += d;
  // One JSON answer per request (Content-Length framed): complete once the body is in.
  const m = /^HTTP\/1\.1 (\d+)[^]*?content-length: (\d+)\r\n[^]*?\r\n\r\n/i.exec(rawAnswer);
  if (m && Buffer.byteLength(rawAnswer) - Buffer.byteLength(m[0]) >= Number(m[2])) {
    rawAnswer = '';
    rawAnswered?.(Number(m[1]));
  }
});
const rawCancel = (id: string): Promise<number> =>
  new Promise((resolve) => {
    rawAnswered = resolve;
    // A loopback Host: any other is refused 403 host_not_allowed (DNS-rebinding guard).
    raw.write(`POST /api/tasks/${id}/cancel HTTP/1.1\r\nHost: ${rawHost}\r\nContent-Length: 0\r\n\r\n`);
  });
const ws = new WebSocket(`${url.replace('http', 'ws')}/api/ws`);
await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
const acks = new Map<string, (status: string) => void>();
ws.on('message', (raw) => {
  const f = JSON.parse(String(raw)) as { type: string; request_id?: string; status?: string; message?: string };
  if (f.type === 'cancel_ack' && f.request_id) acks.get(f.request_id)?.(f.status ?? '');
  if (f.type === 'error') console.error('ws error frame:', f);
});

type Path = 'http' | 'raw' | 'ws';
const times: Record<Path, number[]> = { http: [], raw: [], ws: [] };
const direct: number[] = [];
let requests = 0;
let tokensAfter = 0;
let deltasAfterCancelling = 0;

/** A streamed generate through leash, cancelled after 3 deltas by `path`; returns ms to upstream close. */
async function throughLeash(path: Path): Promise<number> {
  const res = await fetch(`${url}/api/tasks`, {
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
  let acked: Promise<unknown>;
  const t0 = nowAbs();
  if (path === 'http') acked = postCancel(id);
  else if (path === 'raw') acked = rawCancel(id);
  else {
    const rid = `c${index}`;
    acked = new Promise((resolve) => acks.set(rid, resolve));
    ws.send(JSON.stringify({ type: 'cancel', request_id: rid, task_id: id }));
  }
  const closing = upstream.waitForSocketClose(index);
  const answer = await acked;
  // A refused cancel would time the task's own end instead: say so rather than print it.
  if (typeof answer === 'number' && answer >= 300) throw new Error(`the ${path} cancel was answered ${answer}`);
  const closed = await closing;
  tokensAfter += closed.tokensAfter;
  await readAll;
  return closed.closedAt - t0;
}

/** The reference: the same stream fetched straight from the upstream and aborted. */
async function straight(): Promise<number> {
  const ac = new AbortController();
  const r = await fetch(`${upstream.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'x', stream: true, messages: [{ role: 'user', content: 'go' }] }),
    signal: ac.signal,
  });
  const rd = r.body!.getReader();
  for (let k = 0; k < 3; k++) await rd.read();
  const index = requests++;
  await upstream.waitForRequests(requests);
  const t0 = nowAbs();
  ac.abort();
  const closed = await upstream.waitForSocketClose(index);
  await rd.read().catch(() => {});
  return closed.closedAt - t0;
}

header(`leash upstream-abort benchmark, ${TRIALS} cancels mid-stream per path (leash serve in its own process)`);
try {
  for (let i = 0; i < TRIALS; i++) {
    times.http.push(await throughLeash('http'));
    times.raw.push(await throughLeash('raw'));
    times.ws.push(await throughLeash('ws'));
    direct.push(await straight());
  }
  const d = summarize(direct);
  row('reference: direct fetch abort → upstream socket closed', `p50 ${fmt(d.p50)} · p99 ${fmt(d.p99)}`);
  for (const [path, label] of [
    ['http', 'POST …/cancel (node:http client)'],
    ['raw', 'POST …/cancel (written on an open connection)'],
    ['ws', 'WebSocket cancel frame'],
  ] as const) {
    const a = summarize(times[path]);
    row(`leash ${label} → upstream socket closed`, `p50 ${fmt(a.p50)} · p99 ${fmt(a.p99)}`, 'p99 ≤ 10 ms', a.p99 <= 10);
    row(
      `  ratio to the direct abort (p50 · p99)`,
      `${(a.p50 / d.p50).toFixed(2)}× · ${(a.p99 / d.p99).toFixed(2)}×`,
      '≤ 1.5×',
      a.p99 / d.p99 <= 1.5 && a.p50 / d.p50 <= 1.5,
    );
  }
  row('tokens the upstream wrote after a cancel (total)', String(tokensAfter), '0', tokensAfter === 0);
  row(
    'output.delta frames delivered after task.cancelling',
    String(deltasAfterCancelling),
    '0',
    deltasAfterCancelling === 0,
  );
} finally {
  ws.close();
  raw.destroy();
  agent.destroy();
  server.proc.kill('SIGTERM');
  await server.exited;
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
}
