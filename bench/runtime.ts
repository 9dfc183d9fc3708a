// Benchmark of the task runtime through the library (issue 2):
//  - no-op tasks created → completed per second (each persists ≥ 3 events)
//  - pickup latency create → handler started, p50/p99
//  - cooperative cancel → handler returned, p50/p99
// Reference printed beside it: the raw SQLite insert rate of the same file, the ceiling.
// Each figure is the median of three runs in this one invocation, with its spread
// (BENCH_RUNS=n for another count; issue 21).
// Run: npm run bench:runtime   (or: npx node bench/runtime.ts [tasks])

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pino from 'pino';
import { z } from 'zod';
import { defineTask } from '../src/runtime/define-task.ts';
import { Runtime } from '../src/runtime/runtime.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { RUNS, fmt, header, repeat, summarize, type Figure } from './lib.ts';

const N = Number(process.argv[2] ?? 5000);

let onStart: ((id: string) => void) | null = null;
const noop = defineTask({
  type: 'noop',
  input: z.object({}).strict(),
  async run(_input, ctx) {
    onStart?.(ctx.taskId);
    return null;
  },
});
const hold = defineTask({
  type: 'hold',
  input: z.object({}).strict(),
  async run(_input, ctx) {
    onStart?.(ctx.taskId);
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
  },
});

header(`leash runtime benchmark, ${N} tasks, SQLite WAL file, ${RUNS} runs`);
const ms = (v: number): string => fmt(v);
const perSec = (v: number): string => `${Math.round(v)} /s`;

await repeat(async (): Promise<Record<string, Figure>> => {
  const out: Record<string, Figure> = {};
  const dir = mkdtempSync(join(tmpdir(), 'leash-bench-'));
  const cancelLatencies: number[] = [];
  const store = SqliteStore.open(join(dir, 'bench.db'));
  await store.migrate();
  const runtime = new Runtime({
    store,
    models: {
      defaultModel: 'none',
      allowedModels: ['none'],
      check: () => {},
      resolve: () => {
        throw new Error('none');
      },
      list: () => [],
    },
    logger: pino({ level: 'silent' }),
    tasks: [noop, hold],
    concurrency: 64,
    maxRunningPerOwner: 64,
    maxQueuedPerOwner: N + 10,
    observer: {
      taskEnded: (_t, info) => {
        if (info.cancelLatencyMs !== null) cancelLatencies.push(info.cancelLatencyMs);
      },
    },
  });
  await runtime.start();

  // 1. Throughput: create N no-op tasks (64 creates in flight), until all completed.
  {
    let completed = 0;
    const ids: string[] = [];
    const t0 = performance.now();
    const watchers: Promise<void>[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < N) {
          next++;
          const { task } = await runtime.create('bench', { type: 'noop', input: {} });
          ids.push(task.id);
        }
      }),
    );
    // Completion: every task's terminal event, as a subscriber would see it.
    for (const id of ids) {
      watchers.push(
        (async () => {
          for await (const e of runtime.events(id)) if (e.type === 'task.completed') completed++;
        })(),
      );
    }
    await Promise.all(watchers);
    const secs = (performance.now() - t0) / 1000;
    if (completed !== N) console.log(`  ! ${completed}/${N} tasks completed`);
    const events = (await store.listEvents(ids[0]!, 0)).length;
    out['no-op tasks created→completed (library)'] = {
      value: N / secs,
      show: perSec,
      goal: '≥ 2000 /s',
      ok: (v) => v >= 2000,
    };
    out['  events persisted per task'] = { value: events, show: String, goal: '≥ 1', ok: (v) => v >= 1 };
  }

  // 2. Pickup latency: one task at a time, create() called → handler running.
  {
    const samples: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t0 = performance.now();
      const started = new Promise<void>((r) => (onStart = () => r()));
      const { task } = await runtime.create('bench', { type: 'noop', input: {} });
      await started;
      samples.push(performance.now() - t0);
      await runtime.wait(task.id, 'bench', 5000);
    }
    const s = summarize(samples);
    out['pickup create→started p50'] = { value: s.p50, show: ms, goal: '≤ 2 ms', ok: (v) => v <= 2 };
    out['pickup create→started p99'] = { value: s.p99, show: ms };
  }

  // 3. Cooperative cancel: cancel() asked → handler returned (runtime's own measure).
  {
    cancelLatencies.length = 0;
    const outer: number[] = [];
    for (let i = 0; i < 500; i++) {
      const started = new Promise<void>((r) => (onStart = () => r()));
      const { task } = await runtime.create('bench', { type: 'hold', input: {} });
      await started;
      const t0 = performance.now();
      await runtime.cancel(task.id, 'bench');
      await runtime.wait(task.id, 'bench', 5000);
      outer.push(performance.now() - t0);
    }
    const s = summarize(cancelLatencies);
    out['cancel asked→handler returned p50'] = { value: s.p50, show: ms };
    out['cancel asked→handler returned p99'] = { value: s.p99, show: ms, goal: '≤ 5 ms', ok: (v) => v <= 5 };
    out['cancel call→task cancelled & persisted p99'] = { value: summarize(outer).p99, show: ms };
  }
  onStart = null;

  await runtime.stop({ graceMs: 0 });
  await store.close();

  // Reference: the same SQLite file settings doing nothing but single-row inserts in one
  // transaction per row (what a task needs at least three of).
  {
    const db = new DatabaseSync(join(dir, 'ref.db'));
    db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
    const ins = db.prepare('INSERT INTO t(v) VALUES (?)');
    const t0 = performance.now();
    for (let i = 0; i < N * 3; i++) ins.run('x');
    const secs = (performance.now() - t0) / 1000;
    out['reference: raw SQLite autocommit inserts'] = { value: (N * 3) / secs, show: perSec };
    out['reference: ÷3 (events per task) = ceiling w/o batching'] = { value: N / secs, show: perSec };
    db.close();
  }
  rmSync(dir, { recursive: true, force: true });
  return out;
});
