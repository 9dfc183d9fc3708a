// Many concurrent SSE streams (issue 9): the server in this process runs 100 slow
// tasks; a client in a child process opens N streams (default 10,000) spread over
// them and keeps them open. Reported: the server's memory per open stream (RSS and
// JS heap, after GC, minus the same server with no stream open; goal ≤ 30 KB),
// how long opening them took, that each stream got its events, and that closing
// them all brings the event listeners back to zero.
//
// Run: npx node --expose-gc bench/sse-streams.ts [streams=10000]

import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startServer } from '../src/cli/serve.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import { header, row } from './lib.ts';
import { settledMemory } from './soak.ts';

const TASKS = 100;
const BATCH = 500;

type ToClient = { type: 'close' };
type FromClient =
  | { type: 'opened'; n: number; ms: number; failed: number }
  | { type: 'stats'; withEvents: number; bytes: number }
  | { type: 'closed' };

/** The client: opens the streams in batches, reports, closes them when told. */
async function client(url: string, ids: string[], n: number): Promise<void> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const reqs: Array<ReturnType<typeof get>> = [];
  const gotEvent = new Uint8Array(n);
  let bytes = 0;
  let failed = 0;
  const t0 = performance.now();
  for (let start = 0; start < n; start += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, n - start) }, (_, k) => {
        const i = start + k;
        return new Promise<void>((resolve) => {
          const req = get(`${url}/api/tasks/${ids[i % ids.length]}/events`, { agent }, (res) => {
            res.on('data', (chunk: Buffer) => {
              bytes += chunk.length;
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
  process.send!({ type: 'opened', n: reqs.length - failed, ms: performance.now() - t0, failed } satisfies FromClient);
  process.on('message', (m: ToClient) => {
    if (m.type !== 'close') return;
    process.send!({ type: 'stats', withEvents: gotEvent.reduce((a, b) => a + b, 0), bytes } satisfies FromClient);
    for (const r of reqs) r.destroy();
    setTimeout(() => {
      process.send!({ type: 'closed' } satisfies FromClient);
      process.exit(0);
    }, 500);
  });
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 10_000);
  if (!(globalThis as { gc?: unknown }).gc) console.log('(run with --expose-gc for settled memory figures)');
  const dir = mkdtempSync(join(tmpdir(), 'leash-sse-'));
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    db: join(dir, 'sse.db'),
    // Slow output: every stream gets events, the server is not busy generating.
    models: createModelRegistry({ defaultModel: 'simulated?tps=1&tokens=1000', providers: {} }),
    logger: pino({ level: 'warn' }),
    runtime: { concurrency: TASKS + 8, maxRunningPerOwner: TASKS + 8, shutdownGraceMs: 0 },
  });
  try {
    header(`${n} concurrent SSE streams over ${TASKS} running tasks (server in this process, client in a child)`);
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++)
      ids.push((await server.runtime.create('local', { type: 'generate', input: { prompt: `stream ${i}` } })).task.id);
    for (;;) {
      const running = (await server.runtime.countByStatus()).running;
      if (running === TASKS) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const m0 = await settledMemory();
    const child = fork(import.meta.filename, ['client', server.url, String(n), ...ids], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const next = (type: FromClient['type']): Promise<FromClient> =>
      new Promise((resolve) => {
        const on = (m: FromClient): void => {
          if (m.type === type) {
            child.off('message', on);
            resolve(m);
          }
        };
        child.on('message', on);
      });
    const opened = (await next('opened')) as Extract<FromClient, { type: 'opened' }>;
    await new Promise((r) => setTimeout(r, 3000)); // a few events on every stream
    const m1 = await settledMemory();
    const listeners = server.runtime.eventLog.listenerCount;
    const conns = await new Promise<number>((resolve) => server.app.server.getConnections((_e, c) => resolve(c)));
    const statsP = next('stats');
    const closedP = next('closed');
    child.send({ type: 'close' } satisfies ToClient);
    const stats = (await statsP) as Extract<FromClient, { type: 'stats' }>;
    await closedP;
    for (let i = 0; i < 100 && server.runtime.eventLog.listenerCount > 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    const m2 = await settledMemory();

    const perRss = (m1.rss - m0.rss) / opened.n / 1024;
    const perHeap = (m1.heapUsed + m1.external - m0.heapUsed - m0.external) / opened.n / 1024;
    row(
      'streams open (failed)',
      `${opened.n} (${opened.failed})`,
      `${n}, 0 failed`,
      opened.n === n && opened.failed === 0,
    );
    row('time to open them all', `${(opened.ms / 1000).toFixed(1)} s`);
    row('open server connections', String(conns));
    row('streams that received events', String(stats.withEvents), String(n), stats.withEvents === n);
    row('event-bus entries while open (one per task)', String(listeners), String(TASKS), listeners === TASKS);
    row('server RSS: none open → all open', `${(m0.rss / 1048576).toFixed(0)} → ${(m1.rss / 1048576).toFixed(0)} MB`);
    row('server memory per stream (RSS)', `${perRss.toFixed(1)} KB`, '≤ 30 KB', perRss <= 30);
    row('server memory per stream (JS heap used + external)', `${perHeap.toFixed(1)} KB`);
    row(
      'server memory per stream (JS heap reserved)',
      `${((m1.heapTotal - m0.heapTotal) / opened.n / 1024).toFixed(1)} KB`,
    );
    row(
      'event-bus entries after all closed',
      String(server.runtime.eventLog.listenerCount),
      '0',
      server.runtime.eventLog.listenerCount === 0,
    );
    row('server RSS after all closed', `${(m2.rss / 1048576).toFixed(0)} MB`);
    await server.runtime.cancelMany({ owner: 'local' });
  } finally {
    await server.close({ graceMs: 0 });
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'client') await client(process.argv[3]!, process.argv.slice(5), Number(process.argv[4]));
else if (import.meta.main) await main();
