// Benchmark of leash on PostgreSQL (issue 8), side by side with BullMQ 6 in one run:
//  - no-op tasks created → completed per second, at concurrency 1 and 16
//    (c producers, each: create a task, wait until it is stored completed, repeat;
//    the worker side runs c at once)
//  - pickup latency: create called → handler running, p50/p99, same runs
//  - cross-node cancel: cancel() on node B → the handler on node A sees its signal
//    abort, p50/p99 (two runtimes, each with its own pool and LISTEN session)
// Contenders on the same PostgreSQL server, in one fresh database: leash
// (PostgresStore) and BullMQ with its own PostgreSQL backend (createPostgresBackend,
// in its schema `bullmq`).
// Everything runs in this one process through the libraries (no HTTP), so both sides
// pay the same: their client code and their round trips to the server.
//
// Run: npx node bench/pg.ts [--tasks 2000] [--cancels 300] [--pg postgres://postgres@127.0.0.1:5432/test]
//      experiments: [--concurrency 16] [--leash-only] [--cancels 0]

import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import pg from 'pg';
import pino from 'pino';
import { z } from 'zod';
import { Queue, Worker, createPostgresBackend } from 'bullmq';
import { defineTask } from '../src/runtime/define-task.ts';
import { Runtime } from '../src/runtime/runtime.ts';
import { PostgresStore } from '../src/store/postgres/postgres-store.ts';
import { fmt, header, row, summarize } from './lib.ts';

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '2000' },
    pg: { type: 'string', default: process.env.LEASH_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/test' },
    cancels: { type: 'string', default: '300' },
    // For experiments: one concurrency, or leash alone (the recorded figures use the defaults).
    concurrency: { type: 'string', default: '1,16' },
    'leash-only': { type: 'boolean', default: false },
  },
});
const N = Number(args.tasks);
const CANCELS = Number(args.cancels);
const CONCURRENCIES = args.concurrency!.split(',').map(Number);
const LEASH_ONLY = args['leash-only']!;
const BULLMQ_VERSION = (createRequire(import.meta.url)('bullmq/package.json') as { version: string }).version;

interface RunResult {
  tasksPerSec: number;
  pickup: ReturnType<typeof summarize>;
  /** leash only: the pickup in two parts, create call → create returned (committed), and → handler running. */
  parts?: { create: ReturnType<typeof summarize>; claim: ReturnType<typeof summarize>; eager: number };
}

/** c closed loops of create → completed until `total` tasks are done; tasks per second. */
async function closedLoop(c: number, total: number, createAndWait: () => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < total) {
        next++;
        await createAndWait();
      }
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

/**
 * Open loop: `total` tasks created at `rate` per second whatever the answers (the
 * load a service sees), not waiting for one to end before the next; tasks per second.
 */
async function openLoop(rate: number, total: number, createAndWait: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  const runs: Array<Promise<void>> = [];
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
    runs.push(createAndWait());
  }
  await Promise.all(runs);
  return total / ((performance.now() - t0) / 1000);
}

type Drive = (createAndWait: () => Promise<void>) => Promise<number>;

// ── database plumbing ──────────────────────────────────────────────────────

const adminUrl = args.pg!;
const dbName = `leash_bench_${process.pid}`;
const dbUrl = (() => {
  const u = new URL(adminUrl);
  u.pathname = `/${dbName}`;
  return u.toString();
})();

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

const silent = pino({ level: 'silent' });
const noModels = {
  defaultModel: 'none',
  allowedModels: ['none'],
  check: () => {},
  resolve: () => {
    throw new Error('no models in this benchmark');
  },
  list: () => [],
};

// ── leash ──────────────────────────────────────────────────────────────────

const starts = new Map<string, (at: number) => void>();
const noop = defineTask({
  type: 'noop',
  input: z.object({}).strict(),
  async run(_input, ctx) {
    starts.get(ctx.taskId)?.(performance.now());
    return null;
  },
});
const hold = defineTask({
  type: 'hold',
  input: z.object({}).strict(),
  async run(_input, ctx) {
    starts.get(ctx.taskId)?.(performance.now());
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    aborted.get(ctx.taskId)?.(performance.now());
  },
});
const aborted = new Map<string, (at: number) => void>();

async function leashNode(
  name: string,
  concurrency: number,
  onEnded: (id: string) => void,
): Promise<{ runtime: Runtime; close: () => Promise<void> }> {
  const store = await PostgresStore.open(dbUrl, { poolMax: 20 });
  await store.migrate();
  const runtime = new Runtime({
    store,
    models: noModels,
    logger: silent,
    tasks: [noop, hold],
    nodeId: name,
    concurrency,
    maxRunningPerOwner: 1000,
    maxQueuedPerOwner: 1_000_000,
    observer: { taskEnded: (t) => onEnded(t.id) },
  });
  await runtime.start();
  return {
    runtime,
    close: async () => {
      await runtime.stop({ graceMs: 0 });
      await store.close();
    },
  };
}

async function leashRun(c: number, total: number, drive?: Drive): Promise<RunResult> {
  const ended = new Map<string, () => void>();
  const early = new Set<string>();
  const node = await leashNode(`bench-${c}`, c, (id) => {
    const f = ended.get(id);
    if (f) f();
    else early.add(id);
  });
  const pickups: number[] = [];
  const creates: number[] = [];
  const claims: number[] = [];
  const once = async (): Promise<void> => {
    const t0 = performance.now();
    // The id is ours, so the start and end hooks are in place before the task exists.
    const id = `task_b${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
    const started = new Promise<number>((r) => starts.set(id, r));
    const done = new Promise<void>((r) => ended.set(id, r));
    await node.runtime.create('bench', { type: 'noop', input: {}, id } as never);
    const created = performance.now();
    const at = await started;
    pickups.push(at - t0);
    creates.push(created - t0);
    claims.push(at - created);
    await done;
    starts.delete(id);
    ended.delete(id);
  };
  try {
    await closedLoop(c, Math.min(100, total), once); // warm-up: pools, prepared statements, JIT
    pickups.length = 0;
    creates.length = 0;
    claims.length = 0;
    const rate = await (drive ?? ((f) => closedLoop(c, total, f)))(once);
    return {
      tasksPerSec: rate,
      pickup: summarize(pickups),
      parts: {
        create: summarize(creates),
        claim: summarize(claims),
        eager: claims.filter((c) => c <= 0).length / claims.length,
      },
    };
  } finally {
    await node.close();
  }
}

async function leashCancel(count: number): Promise<ReturnType<typeof summarize>> {
  // A runs handlers; B only takes requests (concurrency 0: it claims nothing).
  const a = await leashNode('node-a', 64, () => {});
  const b = await leashNode('node-b', 0, () => {});
  const samples: number[] = [];
  try {
    for (let i = 0; i < count + 20; i++) {
      const id = `task_c${i}_${Date.now().toString(36)}`;
      const started = new Promise<number>((r) => starts.set(id, r));
      const stopped = new Promise<number>((r) => aborted.set(id, r));
      await b.runtime.create('bench', { type: 'hold', input: {}, id } as never);
      await started;
      const t0 = performance.now();
      await b.runtime.cancel(id, 'bench');
      const t1 = await stopped;
      if (i >= 20) samples.push(t1 - t0); // the first ones warm up
      await a.runtime.wait(id, 'bench', 5000);
      starts.delete(id);
      aborted.delete(id);
    }
  } finally {
    await a.close();
    await b.close();
  }
  return summarize(samples);
}

// ── BullMQ ─────────────────────────────────────────────────────────────────

type BullConnection = Record<string, unknown>;

async function bullRun(connection: BullConnection, c: number, total: number, drive?: Drive): Promise<RunResult> {
  const name = `bench_${c}_${process.pid}`;
  const queue = new Queue(name, { connection } as never, createPostgresBackend);
  const jobStarts = new Map<string, (t: number) => void>();
  const jobEnds = new Map<string, () => void>();
  const processor = async (job: { id?: string }): Promise<null> => {
    jobStarts.get(job.id!)?.(performance.now());
    return null;
  };
  const wopts = { connection, concurrency: c } as never;
  const worker = new Worker(name, processor, wopts, createPostgresBackend);
  worker.on('completed', (job) => jobEnds.get(job.id!)?.());
  await worker.waitUntilReady();
  await queue.waitUntilReady();
  let n = 0;
  const pickups: number[] = [];
  const once = async (): Promise<void> => {
    const jobId = `j${n++}`;
    const t0 = performance.now();
    const started = new Promise<number>((r) => jobStarts.set(jobId, r));
    const done = new Promise<void>((r) => jobEnds.set(jobId, r));
    await queue.add('noop', {}, { jobId });
    pickups.push((await started) - t0);
    await done;
    jobStarts.delete(jobId);
    jobEnds.delete(jobId);
  };
  try {
    await closedLoop(c, Math.min(100, total), once);
    pickups.length = 0;
    const rate = await (drive ?? ((f) => closedLoop(c, total, f)))(once);
    return { tasksPerSec: rate, pickup: summarize(pickups) };
  } finally {
    await worker.close();
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}

// ── run ────────────────────────────────────────────────────────────────────

await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
await admin(`CREATE DATABASE ${dbName}`);
const serverVersion = await (async () => {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  const v = (await c.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
  await c.end();
  return v;
})();
const bullPg = { connectionString: dbUrl, schema: 'bullmq', migrate: true };
header(`leash on PostgreSQL ${serverVersion} vs BullMQ ${BULLMQ_VERSION}, ${N} no-op tasks per run`);
console.log(`BullMQ ${BULLMQ_VERSION} has a PostgreSQL backend (createPostgresBackend): compared on the same server.`);
try {
  let slowest16 = Infinity; // the lower of the two closed-loop rates at c=16
  for (const c of CONCURRENCIES) {
    const leash = await leashRun(c, N);
    const bull = LEASH_ONLY ? null : await bullRun(bullPg, c, N);
    console.log(`\n-- concurrency ${c}`);
    if (bull === null) {
      row(`leash (PostgreSQL) tasks/s, c=${c}`, `${Math.round(leash.tasksPerSec)} /s`);
      row(
        `leash pickup p50 / p99, c=${c}`,
        `${fmt(leash.pickup.p50)} / ${fmt(leash.pickup.p99)}`,
        '≤ 5 ms',
        leash.pickup.p50 <= 5,
      );
      row(
        `  of which create (committed) · then claimed and running, p50`,
        `${fmt(leash.parts!.create.p50)} · ${fmt(leash.parts!.claim.p50)}`,
      );
      row(`  started by the create itself (eager start)`, `${Math.round(leash.parts!.eager * 100)} %`);
      continue;
    }
    const ratio = leash.tasksPerSec / bull.tasksPerSec;
    row(`leash (PostgreSQL) tasks/s, c=${c}`, `${Math.round(leash.tasksPerSec)} /s`, `≥ 1.0× BullMQ`, ratio >= 1);
    row(`BullMQ ${BULLMQ_VERSION} (PostgreSQL backend) tasks/s, c=${c}`, `${Math.round(bull.tasksPerSec)} /s`);
    row(`  leash / BullMQ (PostgreSQL)`, `${ratio.toFixed(2)}×`);
    row(`leash pickup p50, c=${c}`, fmt(leash.pickup.p50), '≤ 5 ms', leash.pickup.p50 <= 5);
    row(`leash pickup p99, c=${c}`, fmt(leash.pickup.p99));
    if (leash.parts) {
      row(
        `  of which create (committed) · then claimed and running, p50`,
        `${fmt(leash.parts.create.p50)} · ${fmt(leash.parts.claim.p50)}`,
      );
      row(
        `  started by the create itself (eager start; the rest by a claim)`,
        `${Math.round(leash.parts.eager * 100)} %`,
      );
    }
    row(`BullMQ (PostgreSQL) pickup p50 / p99, c=${c}`, `${fmt(bull.pickup.p50)} / ${fmt(bull.pickup.p99)}`);
    if (c === 16) slowest16 = Math.min(leash.tasksPerSec, bull.tasksPerSec);
  }
  if (Number.isFinite(slowest16)) {
    // The closed loop keeps both systems saturated, so its pickup is mostly queueing.
    // The same 16 workers under a steady arrival rate both can carry (half the slower
    // one's saturated rate) show the pickup a service sees below saturation.
    const rate = Math.round(slowest16 / 2);
    const total = Math.min(N, rate * 5);
    const drive: Drive = (f) => openLoop(rate, total, f);
    const leash = await leashRun(16, total, drive);
    const bull = await bullRun(bullPg, 16, total, drive);
    console.log(
      `\n-- concurrency 16, ${total} tasks arriving at ${rate}/s (half the slower saturated rate; information)`,
    );
    row(`leash pickup p50 / p99`, `${fmt(leash.pickup.p50)} / ${fmt(leash.pickup.p99)}`);
    row(`  started by the create itself (eager start)`, `${Math.round(leash.parts!.eager * 100)} %`);
    row(`BullMQ (PostgreSQL) pickup p50 / p99`, `${fmt(bull.pickup.p50)} / ${fmt(bull.pickup.p99)}`);
  }
  if (CANCELS > 0) {
    const cancel = await leashCancel(CANCELS);
    console.log(`\n-- cross-node cancel (cancel on node B → handler on node A aborted), ${cancel.n} samples`);
    row('leash cross-node cancel p50', fmt(cancel.p50));
    row('leash cross-node cancel p99', fmt(cancel.p99), '≤ 50 ms', cancel.p99 <= 50);
  }
} finally {
  await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
}
process.exit(0);
