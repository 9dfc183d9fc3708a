// Many concurrent SSE streams (issue 9), leash next to a bare `node:http` SSE server.
// Each server runs in its own child process; a client in another child opens N
// streams (default 10,000) in two halves and keeps them open. The server's memory is
// read after a full GC with none open, with N/2 open and with N open.
//
// Reported per server:
// - memory per stream, average: (N open − none open) / N. This includes one-time
//   costs that do not grow with the streams, chiefly V8 enlarging its young
//   generation (new space) under the allocation burst of opening them.
// - memory per stream, marginal: (N open − N/2 open) / (N/2): what one more stream
//   costs once the process has warmed up (the goal ≤ 30 KB is checked on this); and
//   the same less the young generation's growth between the two readings (a one-time
//   cost of the process), on which ≤ 2× the bare server's (issue 21) is judged.
// - the young generation's size at each point, so the one-time part is visible.
// For leash also: every stream received events, and closing all brings the event
// listeners back to zero.
//
// Run: npx node --expose-gc bench/sse-streams.ts [streams=10000]
// (SSE_SNAPSHOTS=/tmp also writes a heap snapshot of each server at each reading.)

import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, get, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { pino } from 'pino';
import { startServer } from '../src/cli/serve.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import { header, row } from './lib.ts';
import { settledMemory } from './soak.ts';

const TASKS = 100;
const BATCH = 500;

interface Mem {
  rss: number;
  heapUsed: number;
  external: number;
  newSpace: number;
  listeners: number;
}
type Msg =
  | { type: 'ready'; url: string; ids: string[] }
  | { type: 'open'; count: number }
  | { type: 'opened'; n: number; ms: number; failed: number }
  | { type: 'mem' }
  | ({ type: 'memory' } & Mem)
  | { type: 'close' }
  | { type: 'stats'; withEvents: number }
  | { type: 'closed' }
  | { type: 'stop' };

const send = (m: Msg): void => void process.send!(m);

let snapshots = 0;
async function memory(listeners: () => number): Promise<Mem> {
  const m = await settledMemory();
  // SSE_SNAPSHOTS=dir: a heap snapshot at each reading, to see what a stream holds.
  if (process.env.SSE_SNAPSHOTS)
    writeHeapSnapshot(join(process.env.SSE_SNAPSHOTS, `${process.argv[2]}-${snapshots++}.heapsnapshot`));
  const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, newSpace, listeners: listeners() };
}

/** A leash server (SQLite file, 100 slow `generate` tasks), run as a child. */
async function leashServer(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-sse-'));
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    db: join(dir, 'sse.db'),
    // Slow output: every stream gets events, the server is not busy generating.
    models: createModelRegistry({ defaultModel: 'simulated?tps=1&tokens=1000', providers: {} }),
    logger: pino({ level: 'warn' }),
    runtime: { concurrency: TASKS + 8, maxRunningPerOwner: TASKS + 8, shutdownGraceMs: 0 },
    // Every stream is the one local owner's: lift the per-owner stream cap (#15) above them.
    security: { maxStreamsPerOwner: 1_000_000 },
  });
  const ids: string[] = [];
  for (let i = 0; i < TASKS; i++)
    ids.push((await server.runtime.create('local', { type: 'generate', input: { prompt: `stream ${i}` } })).task.id);
  while ((await server.runtime.countByStatus()).running < TASKS) await new Promise((r) => setTimeout(r, 50));
  const listeners = (): number => server.runtime.eventLog.listenerCount;
  process.on('message', (m: Msg) => {
    if (m.type === 'mem') void memory(listeners).then((x) => send({ type: 'memory', ...x }));
    if (m.type === 'stop')
      void server.runtime
        .cancelMany({ owner: 'local' })
        .then(() => server.close({ graceMs: 0 }))
        .finally(() => {
          rmSync(dir, { recursive: true, force: true });
          process.exit(0);
        });
  });
  send({ type: 'ready', url: server.url, ids });
}

/** The reference: `node:http` writing one SSE event a second to every open response. */
async function bareServer(): Promise<void> {
  const open = new Set<ServerResponse>();
  let seq = 0;
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(': open\n\n');
    open.add(res);
    res.on('close', () => open.delete(res));
  });
  setInterval(() => {
    seq++;
    for (const res of open) res.write(`id: ${seq}\nevent: output.delta\ndata: {"text":"x","seq":${seq}}\n\n`);
  }, 1000).unref();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  process.on('message', (m: Msg) => {
    if (m.type === 'mem') void memory(() => open.size).then((x) => send({ type: 'memory', ...x }));
    if (m.type === 'stop') server.close(() => process.exit(0));
  });
  send({ type: 'ready', url, ids: ['bare'] });
}

/** The client: opens streams in batches when told, reports, closes them all when told. */
async function client(url: string, paths: string[]): Promise<void> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const reqs: Array<ReturnType<typeof get>> = [];
  const gotEvent: number[] = [];
  const openMore = async (count: number): Promise<void> => {
    let failed = 0;
    const t0 = performance.now();
    const first = reqs.length;
    for (let start = 0; start < count; start += BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(BATCH, count - start) }, (_, k) => {
          const i = first + start + k;
          gotEvent[i] = 0;
          return new Promise<void>((resolve) => {
            const req = get(`${url}${paths[i % paths.length]}`, { agent }, (res) => {
              res.on('data', (chunk: Buffer) => {
                if (chunk.includes('event: ')) gotEvent[i] = 1;
              });
              res.once('data', () => resolve());
              res.on('error', () => {});
            });
            req.on('error', () => {
              failed++;
              resolve();
            });
            reqs.push(req);
          });
        }),
      );
    }
    send({ type: 'opened', n: count - failed, ms: performance.now() - t0, failed });
  };
  process.on('message', (m: Msg) => {
    if (m.type === 'open') void openMore(m.count);
    if (m.type !== 'close') return;
    send({ type: 'stats', withEvents: gotEvent.reduce((a, b) => a + b, 0) });
    for (const r of reqs) r.destroy();
    setTimeout(() => {
      send({ type: 'closed' });
      process.exit(0);
    }, 500);
  });
  send({ type: 'ready', url, ids: [] });
}

function next<T extends Msg['type']>(child: ChildProcess, type: T): Promise<Extract<Msg, { type: T }>> {
  return new Promise((resolve) => {
    const on = (m: Msg): void => {
      if (m.type !== type) return;
      child.off('message', on);
      resolve(m as Extract<Msg, { type: T }>);
    };
    child.on('message', on);
  });
}

const spawnRole = (role: string, args: string[] = []): ChildProcess =>
  fork(import.meta.filename, [role, ...args], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });

async function measure(
  label: string,
  role: 'leash-server' | 'bare-server',
  n: number,
): Promise<{ marginal: number; perStream: number }> {
  const server = spawnRole(role);
  const { url, ids } = await next(server, 'ready');
  const paths = role === 'bare-server' ? ['/'] : ids.map((id) => `/api/tasks/${id}/events`);
  const mem = async (): Promise<Mem> => {
    const p = next(server, 'memory');
    server.send({ type: 'mem' } satisfies Msg);
    return p;
  };
  const c = spawnRole('client', [url, ...paths]);
  await next(c, 'ready');
  const open = async (count: number): Promise<Extract<Msg, { type: 'opened' }>> => {
    const p = next(c, 'opened');
    c.send({ type: 'open', count } satisfies Msg);
    const r = await p;
    await new Promise((res) => setTimeout(res, 3000)); // a few events on every stream
    return r;
  };
  const m0 = await mem();
  const half = Math.floor(n / 2);
  const a = await open(half);
  const mHalf = await mem();
  const b = await open(n - half);
  const m1 = await mem();
  const statsP = next(c, 'stats');
  const closedP = next(c, 'closed');
  c.send({ type: 'close' } satisfies Msg);
  const stats = await statsP;
  await closedP;
  await new Promise((r) => setTimeout(r, 500));
  const m2 = await mem();
  server.send({ type: 'stop' } satisfies Msg);
  await new Promise((r) => server.once('exit', r));

  const opened = a.n + b.n;
  const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`;
  const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MB`;
  const marginal = (m1.rss - mHalf.rss) / (n - half);
  // V8 enlarges its young generation (up to a fixed cap) under a burst of allocation,
  // once for the process: when that happens between the two readings, it is not a cost
  // of the streams opened in between.
  const young = m1.newSpace - mHalf.newSpace;
  const perStream = (m1.rss - mHalf.rss - young) / (n - half);
  header(`${label}: ${n} concurrent SSE streams`);
  row('streams open (failed)', `${opened} (${a.failed + b.failed})`, `${n}, 0 failed`, opened === n);
  row('time to open them all', `${((a.ms + b.ms) / 1000).toFixed(1)} s`);
  row('streams that received events', String(stats.withEvents), String(n), stats.withEvents === n);
  row('server RSS: none → half → all open', `${mb(m0.rss)} → ${mb(mHalf.rss)} → ${mb(m1.rss)}`);
  row('V8 young generation: none → half → all', `${mb(m0.newSpace)} → ${mb(mHalf.newSpace)} → ${mb(m1.newSpace)}`);
  row('memory per stream, average (RSS, incl. one-time)', kb((m1.rss - m0.rss) / n));
  row('memory per stream, marginal (RSS, half → all)', kb(marginal), '≤ 30 KB', marginal <= 30 * 1024);
  row(`  the same less the young generation's growth (${mb(young)})`, kb(perStream));
  row(
    '  of which JS heap used + external',
    kb((m1.heapUsed + m1.external - mHalf.heapUsed - mHalf.external) / (n - half)),
  );
  if (role === 'leash-server') {
    row('event-bus entries while open (one per task)', String(m1.listeners), String(TASKS), m1.listeners === TASKS);
    row('event-bus entries after all closed', String(m2.listeners), '0', m2.listeners === 0);
  }
  row('server RSS after all closed', mb(m2.rss));
  return { marginal, perStream };
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 10_000);
  if (!Number.isInteger(n) || n < 2) throw new Error(`streams must be an integer ≥ 2, got ${process.argv[2]}`);
  const bare = await measure('reference, bare node:http SSE server', 'bare-server', n);
  const leash = await measure('leash (Fastify, GET /api/tasks/:id/events)', 'leash-server', n);
  header('summary');
  const kb = (b: number): string => `${(b / 1024).toFixed(1)} KB`;
  row('marginal memory per stream: bare node:http', kb(bare.marginal));
  row('marginal memory per stream: leash', kb(leash.marginal), '≤ 30 KB', leash.marginal <= 30 * 1024);
  row('leash / bare node:http, marginal per stream', `${(leash.marginal / bare.marginal).toFixed(2)}×`);
  // Judged without V8's one-time young-generation growth, which lands between the two
  // readings in some runs and not others (16 → 64 MB once: 10 KB a stream at 10,000).
  const ratio = leash.perStream / bare.perStream;
  row(
    `  the same less the young generation's growth (${kb(leash.perStream)} / ${kb(bare.perStream)})`,
    `${ratio.toFixed(2)}×`,
    '≤ 2×',
    ratio <= 2,
  );
}

const role = process.argv[2];
if (role === 'client') await client(process.argv[3]!, process.argv.slice(4));
else if (role === 'leash-server') await leashServer();
else if (role === 'bare-server') await bareServer();
else if (import.meta.main) await main();
