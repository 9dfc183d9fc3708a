// Benchmark of hard cancellation (issue 6). For worker and process isolation, with
// a 200 ms grace: a handler spinning on the CPU that never looks at its signal is
// cancelled; we time cancel → CPU idle, read from the kernel's own per-thread CPU
// clock (/proc/<pid>/task/<tid>/schedstat, ns), i.e. the last moment the spinning
// thread or process still got CPU time. Goal: every trial ≤ grace + 100 ms.
// Also: the per-task overhead of each isolation mode on no-op tasks, pooled vs cold,
// next to inline (the reference: no isolation at all).
// Run: npm run bench:hard-cancel   (or: npx node bench/hard-cancel.ts [trials])

import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import pino from 'pino';
import { createModelRegistry } from '../src/models/registry.ts';
import { Runtime } from '../src/runtime/runtime.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { benchTasks } from './hard-cancel-tasks.ts';
import { fmt, header, row, summarize } from './lib.ts';

const TRIALS = Number(process.argv[2] ?? 50);
const GRACE = 200;
const dir = mkdtempSync(join(tmpdir(), 'leash-bench-hc-'));

/** CPU ns of every thread of this process and of its child processes, keyed by pid/tid. */
function cpuByThread(): Map<string, number> {
  const out = new Map<string, number>();
  const pids = [String(process.pid)];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) pids.push(p);
    } catch {
      /* gone */
    }
  }
  for (const pid of pids) {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        out.set(`${pid}/${tid}`, Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
      } catch {
        /* gone */
      }
    }
  }
  return out;
}

/** The thread that used the most CPU over `ms` (the spinner), never this process's main thread. */
async function busiest(ms: number): Promise<string> {
  const a = cpuByThread();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuByThread();
  let best = '';
  let most = -1;
  for (const [k, v] of b) {
    if (k === `${process.pid}/${process.pid}`) continue;
    const d = v - (a.get(k) ?? v);
    if (d > most) {
      most = d;
      best = k;
    }
  }
  return best;
}

function cpuOf(key: string): number | null {
  const [pid, tid] = key.split('/');
  try {
    return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return null; // the thread or process is gone
  }
}

async function makeRuntime(maxIdle: number): Promise<{ runtime: Runtime; close: () => Promise<void> }> {
  const store = SqliteStore.open(join(dir, `bench-${maxIdle}-${Math.random()}.db`));
  await store.migrate();
  const runtime = new Runtime({
    store,
    models: createModelRegistry({ defaultModel: 'simulated', providers: {} }),
    logger: pino({ level: 'silent' }),
    tasks: benchTasks,
    isolationMaxIdle: maxIdle,
  });
  await runtime.start();
  return { runtime, close: async () => (await runtime.stop({ graceMs: 0 }), await store.close()) };
}

header(`leash hard-cancel benchmark, ${TRIALS} trials per isolation, grace ${GRACE} ms`);
const { runtime, close } = await makeRuntime(2);
for (const kind of ['worker', 'process'] as const) {
  const idle: number[] = [];
  const cancelled: number[] = [];
  for (let i = 0; i < TRIALS; i++) {
    const { task } = await runtime.create('bench', { type: `spin.${kind}`, input: {} });
    for (;;) {
      const t = await runtime.get(task.id, 'bench');
      if (t?.output_text) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    const spinner = await busiest(30);
    const t0 = performance.now();
    await runtime.cancel(task.id, 'bench');
    const done = runtime.wait(task.id, 'bench', 10_000).then(() => cancelled.push(performance.now() - t0));
    // Poll the spinner's CPU clock; the last time it grew is when the CPU went idle.
    let last = cpuOf(spinner);
    let lastGrowth = t0;
    while (performance.now() - t0 < GRACE + 1000) {
      await new Promise((r) => setImmediate(r));
      const now = cpuOf(spinner);
      if (now === null) break;
      if (last !== null && now > last) lastGrowth = performance.now();
      last = now;
    }
    idle.push(lastGrowth - t0);
    await done;
  }
  const s = summarize(idle);
  const c = summarize(cancelled);
  row(`${kind}: cancel → CPU idle p50`, fmt(s.p50));
  row(`${kind}: cancel → CPU idle p99`, fmt(s.p99));
  row(`${kind}: cancel → CPU idle max`, fmt(s.max), `≤ ${GRACE + 100} ms`, s.max <= GRACE + 100);
  row(`${kind}: cancel → task cancelled p99`, fmt(c.p99));
}
await close();

// Per-task overhead on no-op tasks, one at a time: create → completed.
async function perTask(rt: Runtime, type: string, n: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const { task } = await rt.create('bench', { type, input: {} });
    await rt.wait(task.id, 'bench', 10_000);
    samples.push(performance.now() - t0);
  }
  return summarize(samples).p50;
}
const pooled = await makeRuntime(2);
const cold = await makeRuntime(0);
const inline = await perTask(pooled.runtime, 'noop.inline', 200);
row('reference: inline no-op task create→completed p50', fmt(inline));
for (const kind of ['worker', 'process'] as const) {
  await perTask(pooled.runtime, `noop.${kind}`, 5); // warm the pool
  const p = await perTask(pooled.runtime, `noop.${kind}`, 100);
  const c = await perTask(cold.runtime, `noop.${kind}`, kind === 'process' ? 20 : 50);
  row(`${kind} pooled: no-op create→completed p50`, fmt(p), undefined);
  row(`${kind} cold (new ${kind} per task): p50`, fmt(c));
  row(`${kind} pooled overhead vs inline`, fmt(p - inline));
}
await pooled.close();
await cold.close();
rmSync(dir, { recursive: true, force: true });
