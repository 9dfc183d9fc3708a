// Soak (issue 9): many create/cancel cycles, then the process must look as it did
// before — RSS within 10 % (after GC), every in-memory registry of the runtime back
// to zero (running tasks, event listeners, unwritten events), and no handle left
// open (`process.getActiveResourcesInfo()` the same as before).
//
// A cycle creates a slow `generate` task and cancels it: every other one at once
// (it is still queued: it never starts), the others once a follower has seen it
// start (the model call is running: the cancel goes through its signal), then
// waits for `cancelled`. Library cycles call the Runtime directly; HTTP cycles go
// through a real server in this process (POST, SSE follow then hang up, cancel,
// long-poll wait).
//
// Run: npx node --expose-gc bench/soak.ts [libraryCycles=100000] [httpCycles=10000]
// test/reliability.soak.test.ts runs the same cycles, fewer of them, in CI.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { getHeapSpaceStatistics } from 'node:v8';
import { join } from 'node:path';
import { pino } from 'pino';
import { startServer } from '../src/cli/serve.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import { Runtime } from '../src/runtime/runtime.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import type { Store } from '../src/store/store.ts';
import { builtinTasks } from '../src/tasks/index.ts';
import { header, row } from './lib.ts';

/** Long enough never to finish on its own during a cycle. */
export const SOAK_MODEL = 'simulated?tps=50&tokens=2000';

export interface CycleCounts {
  cycles: number;
  cancelledQueued: number;
  cancelledRunning: number;
  /** Tasks that ended in another state (should stay 0). */
  unexpected: number;
}

/** Runs `fn(i)` for i < n with `concurrency` in flight. */
export async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** Create/cancel cycles through the Runtime API. */
export async function libraryCycles(
  rt: Runtime,
  n: number,
  opts: { concurrency?: number; owners?: number; onProgress?: (done: number) => void } = {},
): Promise<CycleCounts> {
  const counts: CycleCounts = { cycles: 0, cancelledQueued: 0, cancelledRunning: 0, unexpected: 0 };
  const owners = opts.owners ?? 8;
  await pool(n, opts.concurrency ?? 32, async (i) => {
    const owner = `soak${i % owners}`;
    const { task } = await rt.create(owner, { type: 'generate', input: { prompt: `cycle ${i}`, model: SOAK_MODEL } });
    let running = false;
    if (i % 2 === 1) {
      // Follow until it has started (returning from the loop unsubscribes).
      for await (const e of rt.events(task.id)) {
        if (e.type === 'task.started' || e.type === 'output.delta') {
          running = true;
          break;
        }
      }
    }
    await rt.cancel(task.id, owner, 'user');
    const end = await rt.wait(task.id, owner, 30_000);
    counts.cycles++;
    if (end?.status !== 'cancelled') counts.unexpected++;
    else if (running) counts.cancelledRunning++;
    else counts.cancelledQueued++;
    if (counts.cycles % 1000 === 0) opts.onProgress?.(counts.cycles);
  });
  return counts;
}

/** Create/cancel cycles through HTTP: POST, follow the SSE stream until started and hang up, cancel, wait. */
export async function httpCycles(
  url: string,
  n: number,
  opts: { concurrency?: number; onProgress?: (done: number) => void } = {},
): Promise<CycleCounts> {
  const counts: CycleCounts = { cycles: 0, cancelledQueued: 0, cancelledRunning: 0, unexpected: 0 };
  const json = { 'content-type': 'application/json' };
  await pool(n, opts.concurrency ?? 16, async (i) => {
    const res = await fetch(`${url}/api/tasks`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ type: 'generate', input: { prompt: `http ${i}`, model: SOAK_MODEL } }),
    });
    const { id } = (await res.json()) as { id: string };
    let running = false;
    if (i % 2 === 1) {
      const ac = new AbortController();
      const stream = await fetch(`${url}/api/tasks/${id}/events`, { signal: ac.signal });
      const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      while (!running) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        running = /event: (task\.started|output\.delta)/.test(buf);
      }
      ac.abort(); // the client hangs up mid-stream
      await reader.cancel().catch(() => {});
    }
    await (await fetch(`${url}/api/tasks/${id}/cancel`, { method: 'POST', headers: json, body: '{}' })).text();
    const end = (await (await fetch(`${url}/api/tasks/${id}/wait?timeout_s=30`)).json()) as { status: string };
    counts.cycles++;
    if (end.status !== 'cancelled') counts.unexpected++;
    else if (running) counts.cancelledRunning++;
    else counts.cancelledQueued++;
    if (counts.cycles % 1000 === 0) opts.onProgress?.(counts.cycles);
  });
  return counts;
}

/** Open handles by kind (timers, sockets, …). */
export function handles(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) out[kind] = (out[kind] ?? 0) + 1;
  return out;
}

type Gc = (opts?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * Memory after full GCs when the process runs with --expose-gc, the last one
 * memory-reducing (V8's "last resort" collection, as under memory pressure): it also
 * shrinks the young generation, which V8 enlarges (up to 128 MB here) under a high
 * allocation rate and otherwise keeps reserved. What is left is what the process
 * holds, which is what a leak check and a per-stream figure are about.
 */
export async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: Gc }).gc;
  for (let i = 0; i < 3 && gc; i++) {
    if (i < 2) gc();
    else gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage();
}

export function registries(rt: Runtime): { active: number; listeners: number; pending: number } {
  return { active: rt.activeCount, listeners: rt.eventLog.listenerCount, pending: rt.eventLog.pendingCount };
}

export async function drained(rt: Runtime, timeoutMs = 10_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = registries(rt);
    if (r.active === 0 && r.listeners === 0 && r.pending === 0) return true;
    if (Date.now() > end) return false;
    await new Promise((res) => setTimeout(res, 20));
  }
}

/**
 * How long events wait in memory before their commit (the write-behind window: a
 * crash loses at most this much of what clients were shown). A ms histogram, so
 * measuring adds no memory that grows with the run.
 */
export function commitLagHistogram(store: Store): { percentile(p: number): number; max(): number } {
  const buckets = new Float64Array(10_001);
  let maxMs = 0;
  const write = store.writeEvents.bind(store);
  store.writeEvents = async (batch) => {
    await write(batch);
    const now = Date.now();
    for (const w of batch) {
      const ms = Math.max(0, now - Date.parse(w.event.created_at));
      buckets[Math.min(ms, 10_000)]!++;
      if (ms > maxMs) maxMs = ms;
    }
  };
  return {
    percentile(p) {
      const total = buckets.reduce((a, b) => a + b, 0);
      let seen = 0;
      for (let ms = 0; ms < buckets.length; ms++) {
        seen += buckets[ms]!;
        if (seen >= (p / 100) * total) return ms;
      }
      return maxMs;
    },
    max: () => maxMs,
  };
}

const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MB`;
const pct = (a: number, b: number): number => ((b - a) / a) * 100;

interface Checkpoint {
  cycles: number;
  mem: NodeJS.MemoryUsage;
  /** V8's young generation as reserved (it grows under a high allocation rate, up to a cap, and stays). */
  newSpace: number;
}

const newSpaceSize = (): number =>
  getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space')?.space_size ?? 0;

/**
 * Runs `total` cycles in `chunks` parts after `warmup` cycles, with a settled
 * (post-GC) memory reading before the warm-up, after it and after every part, so
 * a plateau (caches and heap reaching their working size) can be told from a leak
 * (growth that goes on in every part).
 */
async function measured(
  label: string,
  run: (n: number) => Promise<CycleCounts>,
  rt: Runtime,
  total: number,
  warmup: number,
  chunks: number,
): Promise<void> {
  const cold = await settledMemory();
  await run(warmup);
  await drained(rt);
  const points: Checkpoint[] = [{ cycles: 0, mem: await settledMemory(), newSpace: newSpaceSize() }];
  const h0 = handles();
  const counts: CycleCounts = { cycles: 0, cancelledQueued: 0, cancelledRunning: 0, unexpected: 0 };
  let secs = 0;
  console.log(`  ${label}: ${warmup} warm-up cycles, then ${total} in ${chunks} parts (memory after GC)`);
  console.log('    cycles    rss        heap used  heap total  (new space)  external');
  const line = (p: Checkpoint): void =>
    console.log(
      `  ${String(p.cycles).padStart(8)}  ${mb(p.mem.rss).padStart(9)}  ${mb(p.mem.heapUsed).padStart(9)}  ${mb(p.mem.heapTotal).padStart(10)}  ${mb(p.newSpace).padStart(11)}  ${mb(p.mem.external).padStart(8)}`,
    );
  line(points[0]!);
  for (let i = 0; i < chunks; i++) {
    const n = Math.round(total / chunks);
    const t0 = performance.now();
    const c = await run(n);
    secs += (performance.now() - t0) / 1000;
    for (const k of ['cycles', 'cancelledQueued', 'cancelledRunning', 'unexpected'] as const) counts[k] += c[k];
    await drained(rt);
    const p = { cycles: counts.cycles, mem: await settledMemory(), newSpace: newSpaceSize() };
    points.push(p);
    line(p);
  }
  const ok = await drained(rt);
  const h1 = handles();
  const first = points[0]!.mem;
  const mid = points[Math.floor(points.length / 2)]!.mem;
  const last = points.at(-1)!.mem;
  const appRss = (p: Checkpoint): number => p.mem.rss - p.newSpace;
  row(
    `${label}: cancelled queued / running / other`,
    `${counts.cancelledQueued}/${counts.cancelledRunning}/${counts.unexpected}`,
    'other 0',
    counts.unexpected === 0,
  );
  row(`${label}: cycles per second`, (counts.cycles / secs).toFixed(0));
  row(`${label}: RSS cold → after warm-up → end`, `${mb(cold.rss)} → ${mb(first.rss)} → ${mb(last.rss)}`);
  row(
    `${label}: RSS growth over the ${counts.cycles} cycles`,
    `${pct(first.rss, last.rss).toFixed(1)} %`,
    '≤ 10 %',
    pct(first.rss, last.rss) <= 10,
  );
  row(`${label}: RSS growth over the second half`, `${pct(mid.rss, last.rss).toFixed(1)} %`);
  const a0 = appRss(points[0]!);
  const a1 = appRss(points.at(-1)!);
  row(
    `${label}: RSS less V8's young generation, growth`,
    `${mb(a0)} → ${mb(a1)}: ${pct(a0, a1).toFixed(1)} %`,
    '≤ 10 %',
    pct(a0, a1) <= 10,
  );
  row(`${label}: JS heap used after warm-up → end`, `${mb(first.heapUsed)} → ${mb(last.heapUsed)}`);
  row(`${label}: registries (active/listeners/pending)`, JSON.stringify(registries(rt)), 'all 0', ok);
  // TCP sockets vary with the HTTP client's keep-alive pool (both ends live in this
  // process), so they are shown but not compared; every other kind must match.
  const { TCPSocketWrap: s0 = 0, ...rest0 } = h0;
  const { TCPSocketWrap: s1 = 0, ...rest1 } = h1;
  row(
    `${label}: open handles before → after`,
    `${JSON.stringify(rest0)} → ${JSON.stringify(rest1)}`,
    'equal',
    JSON.stringify(rest0) === JSON.stringify(rest1),
  );
  if (s0 + s1 > 0) row(`${label}: TCP sockets (keep-alive pool, both ends)`, `${s0} → ${s1}`);
}

async function main(): Promise<void> {
  const libN = Number(process.argv[2] ?? 100_000);
  const httpN = Number(process.argv[3] ?? 10_000);
  if (!(globalThis as { gc?: unknown }).gc) console.log('(run with --expose-gc for settled memory figures)');
  const dir = mkdtempSync(join(tmpdir(), 'leash-soak-'));
  const logger = pino({ level: 'warn' });
  const models = createModelRegistry({ defaultModel: SOAK_MODEL, providers: {} });
  try {
    header(`soak: ${libN} library create/cancel cycles, then ${httpN} over HTTP`);
    const store = SqliteStore.open(join(dir, 'lib.db'));
    await store.migrate();
    const rt = new Runtime({
      store,
      models,
      logger,
      tasks: builtinTasks,
      concurrency: 64,
      maxRunningPerOwner: 16,
      maxQueuedPerOwner: 1_000_000,
    });
    await rt.start();
    const lag = commitLagHistogram(store);
    await measured('library', (n) => libraryCycles(rt, n), rt, libN, Math.max(2000, Math.round(libN / 10)), 10);
    row(
      'write-behind window: event appended → committed',
      `p50 ${lag.percentile(50)} ms, p99 ${lag.percentile(99)} ms, max ${lag.max()} ms`,
    );
    await rt.stop({ graceMs: 0 });
    await store.close();

    // Server and client share this process: its memory is both of theirs.
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      db: join(dir, 'http.db'),
      models,
      logger,
      runtime: { concurrency: 64, maxRunningPerOwner: 16, maxQueuedPerOwner: 1_000_000, shutdownGraceMs: 0 },
    });
    await measured(
      'HTTP',
      (n) => httpCycles(server.url, n),
      server.runtime,
      httpN,
      Math.max(1000, Math.round(httpN / 5)),
      5,
    );
    await server.close({ graceMs: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
