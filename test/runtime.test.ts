import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { z } from 'zod';
import { sleep } from '../src/core/cancel.ts';
import { defineTask } from '../src/runtime/define-task.ts';
import { LeashError } from '../src/core/errors.ts';
import type { Task, TaskEvent } from '../src/core/types.ts';
import { startRuntime, tempDbPath, type TestRuntime } from './helpers/runtime.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { SEQ_AHEAD } from '../src/store/store.ts';

const OWNER = 'alice';

/** A controllable task type: emits `chunks`, then waits `holdMs` (honouring the signal unless `ignoreSignal`). */
let runs = 0;
const probe = defineTask({
  type: 'probe',
  input: z
    .object({
      chunks: z.array(z.string()).default([]),
      holdMs: z.number().default(0),
      ignoreSignal: z.boolean().default(false),
      lateOutput: z.string().optional(),
      fail: z.string().optional(),
      failCode: z.string().optional(),
    })
    .strict(),
  async run(input, ctx) {
    runs++;
    for (const [i, c] of input.chunks.entries()) {
      ctx.progress(((i + 1) / input.chunks.length) * 100, `chunk ${i + 1}`);
      ctx.emit(c);
    }
    if (input.fail) {
      throw input.failCode ? LeashError.fromJSON({ code: input.failCode, message: input.fail }) : new Error(input.fail);
    }
    if (input.holdMs > 0) {
      if (input.ignoreSignal) await sleep(input.holdMs);
      else await sleep(input.holdMs, ctx.signal);
    }
    if (input.lateOutput) ctx.emit(input.lateOutput);
    return { joined: input.chunks.join('') };
  },
});

const cached = defineTask({
  type: 'cached',
  input: z.object({ n: z.number() }),
  cache: { ttlMs: 60_000 },
  async run(input) {
    runs++;
    return { double: input.n * 2 };
  },
});

async function collect(t: TestRuntime, id: string, after = 0): Promise<TaskEvent[]> {
  const out: TaskEvent[] = [];
  for await (const e of t.runtime.events(id, { after })) out.push(e);
  return out;
}

async function waitFor(t: TestRuntime, id: string): Promise<Task> {
  const task = await t.runtime.wait(id, OWNER, 10_000);
  assert.ok(task);
  return task;
}

function assertWellFormedLog(events: TaskEvent[]): void {
  // 1, 2, 3 …; the one kind of skip is recovery after a lost node, which writes above every
  // seq that node may have handed out and names the last one stored.
  events.forEach((e, i) => {
    const prev = i === 0 ? 0 : events[i - 1]!.seq;
    if (e.seq === prev + 1) return;
    assert.equal(e.seq, prev + SEQ_AHEAD + 1, `seq ${e.seq} after ${prev}: no gaps but recovery's`);
    assert.equal(
      (e.data as { last_durable_seq?: number }).last_durable_seq,
      prev,
      'recovery names the last stored seq',
    );
  });
  const terminals = events.filter((e) => ['task.completed', 'task.failed', 'task.cancelled'].includes(e.type));
  assert.equal(terminals.length, 1, 'exactly one terminal event');
  assert.equal(events.at(-1), terminals[0], 'terminal event is last');
  const cancelling = events.findIndex((e) => e.type === 'task.cancelling');
  if (cancelling >= 0) {
    assert.ok(
      events.slice(cancelling).every((e) => e.type !== 'output.delta' && e.type !== 'task.progress'),
      'no output after task.cancelling',
    );
  }
}

describe('runtime', () => {
  const opened: TestRuntime[] = [];
  const open = async (...args: Parameters<typeof startRuntime>): Promise<TestRuntime> => {
    const t = await startRuntime(...args);
    opened.push(t);
    return t;
  };
  after(async () => {
    for (const t of opened) await t.close();
  });

  it('runs a task to completion with an ordered, persisted event log', async () => {
    const t = await open([probe]);
    const { task, created } = await t.runtime.create(OWNER, { type: 'probe', input: { chunks: ['a', 'b', 'c'] } });
    assert.equal(created, true);
    assert.match(task.id, /^task_[0-9a-z]{20}$/);
    assert.equal(task.status, 'running', 'a free slot: started in the create itself (eager start)');
    const done = await waitFor(t, task.id);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.result, { joined: 'abc' });
    assert.equal(done.output_text, 'abc');
    assert.equal(done.progress, 100);
    assert.ok(done.started_at && done.ended_at);
    const events = await collect(t, task.id);
    assertWellFormedLog(events);
    assert.deepEqual(
      events.map((e) => e.type),
      [
        'task.queued',
        'task.started',
        'task.progress',
        'output.delta',
        'task.progress',
        'output.delta',
        'task.progress',
        'output.delta',
        'task.completed',
      ],
    );
    // Persisted, not only in memory: read the store directly.
    const stored = await t.store.listEvents(task.id, 0);
    assert.equal(stored.length, events.length);
    const fromStore = await t.store.getTask(task.id);
    assert.equal(fromStore?.status, 'completed');
    assert.equal(fromStore?.output_text, 'abc');
  });

  it('creates in flight at once each start eagerly while slots are free; past them, tasks queue', async () => {
    const t = await open([probe], { concurrency: 2 });
    const create = () => t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 10_000 } });
    // Both are in flight together: the second is not refused for the first's sake.
    const [a, b] = await Promise.all([create(), create()]);
    assert.deepEqual([a.task.status, b.task.status], ['running', 'running']);
    const c = await create();
    assert.equal(c.task.status, 'queued', 'no free slot: queued for a claim');
    for (const { task } of [a, b, c]) await t.runtime.cancel(task.id, OWNER);
    for (const { task } of [a, b, c]) assert.equal((await waitFor(t, task.id)).status, 'cancelled');
  });

  it('validates input with the zod schema and names unknown types', async () => {
    const t = await open([probe]);
    await assert.rejects(t.runtime.create(OWNER, { type: 'probe', input: { chunks: 'no' } }), (e: unknown) => {
      assert.ok(LeashError.is(e, 'invalid_request'));
      assert.deepEqual(
        (e.details as Array<{ path: string }>).map((d) => d.path),
        ['input.chunks'],
      );
      return true;
    });
    await assert.rejects(t.runtime.create(OWNER, { type: 'probe', input: { extra: 1 } }), /Invalid input/);
    await assert.rejects(t.runtime.create(OWNER, { type: 'nope', input: {} }), (e: unknown) => {
      assert.ok(LeashError.is(e, 'unknown_task_type'));
      assert.match(e.message, /Known types: probe/);
      return true;
    });
    await assert.rejects(t.runtime.create(OWNER, { type: 'probe', input: {}, priority: 1.5 }), /priority/);
  });

  it('cancel while queued: the work never starts', async () => {
    const t = await open([probe], { maxRunningPerOwner: 1 });
    const first = await t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 10_000 } });
    await waitForStatus(t, first.task.id, 'running');
    const before = runs;
    const second = await t.runtime.create(OWNER, { type: 'probe', input: { chunks: ['x'] } });
    const r = await t.runtime.cancel(second.task.id, OWNER);
    assert.equal(r.task.status, 'cancelled');
    assert.equal(r.task.cancel?.reason, 'user');
    await t.runtime.cancel(first.task.id, OWNER);
    await waitFor(t, first.task.id);
    await sleep(50);
    assert.equal(runs, before, 'the cancelled queued task never ran');
    const events = await collect(t, second.task.id);
    assertWellFormedLog(events);
    assert.deepEqual(
      events.map((e) => e.type),
      ['task.queued', 'task.cancelled'],
    );
  });

  it('cancel while running: cancelling until the handler returns, then cancelled with partial output', async () => {
    const t = await open([probe]);
    const { task } = await t.runtime.create(OWNER, { type: 'probe', input: { chunks: ['partial '], holdMs: 10_000 } });
    await waitForOutput(t, task.id, 'partial ');
    const r = await t.runtime.cancel(task.id, OWNER);
    assert.equal(r.alreadyCancelled, false);
    assert.ok(['cancelling', 'cancelled'].includes(r.task.status));
    const done = await waitFor(t, task.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.output_text, 'partial ');
    assert.equal(done.cancel?.reason, 'user');
    const events = await collect(t, task.id);
    assertWellFormedLog(events);
    const last = events.at(-1)!;
    assert.equal(last.type, 'task.cancelled');
    assert.deepEqual(last.data, { reason: 'user', output_text: 'partial ' });
    // Twice: idempotent once cancelled.
    const again = await t.runtime.cancel(task.id, OWNER);
    assert.equal(again.alreadyCancelled, true);
    assert.equal(again.task.status, 'cancelled');
  });

  it('cancel after completion is task_ended; unknown or foreign ids are not_found', async () => {
    const t = await open([probe]);
    const { task } = await t.runtime.create(OWNER, { type: 'probe', input: {} });
    await waitFor(t, task.id);
    await assert.rejects(t.runtime.cancel(task.id, OWNER), (e: unknown) => {
      assert.ok(LeashError.is(e, 'task_ended'));
      assert.deepEqual(e.details, { status: 'completed' });
      return true;
    });
    await assert.rejects(t.runtime.cancel(task.id, 'mallory'), (e: unknown) => LeashError.is(e, 'not_found'));
    await assert.rejects(t.runtime.cancel('task_nope', OWNER), (e: unknown) => LeashError.is(e, 'not_found'));
    assert.equal(await t.runtime.get(task.id, 'mallory'), null);
  });

  it('a handler that ignores its signal stays cancelling until it returns; its late output is dropped', async () => {
    const t = await open([probe]);
    const { task } = await t.runtime.create(OWNER, {
      type: 'probe',
      input: { chunks: ['early '], holdMs: 300, ignoreSignal: true, lateOutput: 'LATE' },
    });
    await waitForOutput(t, task.id, 'early ');
    await t.runtime.cancel(task.id, OWNER);
    await sleep(100);
    const mid = await t.runtime.get(task.id, OWNER);
    assert.equal(mid?.status, 'cancelling', 'not terminal while the work still runs');
    const second = await t.runtime.cancel(task.id, OWNER);
    assert.equal(second.task.status, 'cancelling');
    const done = await waitFor(t, task.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.output_text, 'early ');
    const events = await collect(t, task.id);
    assertWellFormedLog(events);
    assert.ok(!events.some((e) => e.type === 'output.delta' && e.data.text === 'LATE'));
  });

  it('deadline cancels with reason deadline', async () => {
    const t = await open([probe]);
    const { task } = await t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 10_000 }, deadline_ms: 100 });
    const done = await waitFor(t, task.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.cancel?.reason, 'deadline');
    assertWellFormedLog(await collect(t, task.id));
  });

  it('a handler that throws fails the task with a code and no stack', async () => {
    const t = await open([probe]);
    const plain = await t.runtime.create(OWNER, { type: 'probe', input: { fail: 'boom' } });
    const coded = await t.runtime.create(OWNER, {
      type: 'probe',
      input: { fail: 'upstream said no', failCode: 'upstream_error' },
    });
    const a = await waitFor(t, plain.task.id);
    const b = await waitFor(t, coded.task.id);
    assert.equal(a.status, 'failed');
    assert.deepEqual(a.error, { code: 'handler_error', message: 'boom' });
    assert.deepEqual(b.error, { code: 'upstream_error', message: 'upstream said no' });
    assertWellFormedLog(await collect(t, a.id));
  });

  it('runs higher priority first, then in creation order', async () => {
    const order: string[] = [];
    const rec = defineTask({
      type: 'rec',
      input: z.object({ name: z.string() }),
      async run(input) {
        order.push(input.name);
      },
    });
    const t = await open([rec, probe], { concurrency: 1 });
    const blocker = await t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 200 } });
    await waitForStatus(t, blocker.task.id, 'running');
    const ids = [];
    for (const [name, priority] of [
      ['low1', 0],
      ['high', 5],
      ['low2', 0],
      ['neg', -1],
    ] as const) {
      ids.push((await t.runtime.create(OWNER, { type: 'rec', input: { name }, priority })).task.id);
    }
    for (const id of ids) await waitFor(t, id);
    assert.deepEqual(order, ['high', 'low1', 'low2', 'neg']);
  });

  it('Idempotency-Key returns the same task; the queue limit answers queue_full', async () => {
    const t = await open([probe], { maxRunningPerOwner: 1, maxQueuedPerOwner: 2 });
    const a = await t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 10_000 }, idempotency_key: 'k1' });
    const b = await t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 10_000 }, idempotency_key: 'k1' });
    assert.equal(b.created, false);
    assert.equal(b.task.id, a.task.id);
    await waitForStatus(t, a.task.id, 'running');
    await t.runtime.create(OWNER, { type: 'probe', input: {} });
    await t.runtime.create(OWNER, { type: 'probe', input: {} });
    await assert.rejects(t.runtime.create(OWNER, { type: 'probe', input: {} }), (e: unknown) => {
      assert.ok(LeashError.is(e, 'queue_full'));
      assert.match(e.message, /limit 2/);
      return true;
    });
    // Another owner is not affected by alice's queue.
    const other = await t.runtime.create('bob', { type: 'probe', input: {} });
    assert.equal(other.created, true);
    const r = await t.runtime.cancelMany({ owner: OWNER });
    assert.equal(r.cancelled, 3);
    await waitFor(t, a.task.id);
  });

  it('result cache answers a repeat within its TTL with the completed task', async () => {
    const t = await open([cached]);
    const first = await t.runtime.create(OWNER, { type: 'cached', input: { n: 21 } });
    await waitFor(t, first.task.id);
    const before = runs;
    const again = await t.runtime.create(OWNER, { type: 'cached', input: { n: 21 } });
    assert.equal(again.created, false);
    assert.equal(again.task.id, first.task.id);
    assert.deepEqual(again.task.result, { double: 42 });
    const otherOwner = await t.runtime.create('bob', { type: 'cached', input: { n: 21 } });
    assert.equal(otherOwner.created, true, 'the cache never crosses owners');
    const different = await t.runtime.create(OWNER, { type: 'cached', input: { n: 22 } });
    assert.equal(different.created, true);
    await waitFor(t, different.task.id);
    await t.runtime.wait(otherOwner.task.id, 'bob', 5000);
    assert.equal(runs, before + 2);
  });

  it('follows a stream from any seq with no duplicates or gaps, live and after the end', async () => {
    const t = await open([probe]);
    const { task } = await t.runtime.create(OWNER, {
      type: 'probe',
      input: { chunks: ['1', '2', '3', '4'], holdMs: 50 },
    });
    const live = collect(t, task.id);
    const fromThree = collect(t, task.id, 3);
    const all = await live;
    assertWellFormedLog(all);
    assert.deepEqual(
      (await fromThree).map((e) => e.seq),
      all.filter((e) => e.seq > 3).map((e) => e.seq),
    );
    const replay = await collect(t, task.id, 5);
    assert.deepEqual(
      replay.map((e) => e.seq),
      all.slice(5).map((e) => e.seq),
    );
  });

  it('stop() cancels running tasks with reason shutdown after the grace', async () => {
    const t = await startRuntime([probe]);
    const { task } = await t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 10_000 } });
    await waitForStatus(t, task.id, 'running');
    await t.runtime.stop({ graceMs: 50 });
    const stored = await t.store.getTask(task.id);
    assert.equal(stored?.status, 'cancelled');
    assert.equal(stored?.cancel?.reason, 'shutdown');
    await assert.rejects(t.runtime.create(OWNER, { type: 'probe', input: {} }), (e: unknown) =>
      LeashError.is(e, 'shutting_down'),
    );
    await t.close();
  });

  it('after a crash: queued tasks run, running ones fail node_lost or resume from their checkpoint', async () => {
    const seen: unknown[] = [];
    const resumable = defineTask({
      type: 'resumable',
      input: z.object({}),
      resume: true,
      async run(_input, ctx) {
        seen.push(ctx.resumeState);
        return { resumedFrom: ctx.resumeState };
      },
    });
    const db = tempDbPath();
    // A "crashed" node: claims tasks and never finishes them (no runtime, straight to the store).
    const crashed = SqliteStore.open(db.path);
    await crashed.migrate();
    const mk = (id: string, type: string) =>
      crashed.createTask(
        {
          id,
          type,
          owner: OWNER,
          input: {},
          input_hash: id,
          priority: 0,
          thread_id: null,
          deadline_at: null,
          created_at: new Date().toISOString(),
          idempotency_key: null,
          options: null,
        },
        { maxQueuedPerOwner: 100 },
      );
    await mk('task_lost', 'probe');
    await mk('task_resume', 'resumable');
    const claimed = await crashed.claimTasks({
      nodeId: 'node_dead',
      max: 10,
      maxRunningPerOwner: 10,
      leaseMs: 60_000,
      now: new Date().toISOString(),
    });
    assert.equal(claimed.length, 2);
    await crashed.saveCheckpoint('task_resume', { step: 7 });
    await mk('task_queued', 'probe');
    await crashed.close();

    const t = await startRuntime([probe, resumable], { dbPath: db.path });
    try {
      const lost = await waitFor(t, 'task_lost');
      assert.equal(lost.status, 'failed');
      assert.equal(lost.error?.code, 'node_lost');
      const resumed = await waitFor(t, 'task_resume');
      assert.equal(resumed.status, 'completed');
      assert.deepEqual(resumed.result, { resumedFrom: { step: 7 } });
      assert.equal((await waitFor(t, 'task_queued')).status, 'completed');
      for (const id of ['task_lost', 'task_resume', 'task_queued']) assertWellFormedLog(await collect(t, id));
    } finally {
      await t.close();
      db.cleanup();
    }
  });
});

async function waitForStatus(t: TestRuntime, id: string, status: Task['status']): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await t.runtime.get(id, OWNER))?.status === status) return;
    await sleep(10);
  }
  assert.fail(`task ${id} never reached ${status}`);
}

async function waitForOutput(t: TestRuntime, id: string, text: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await t.runtime.get(id, OWNER))?.output_text === text) return;
    await sleep(10);
  }
  assert.fail(`task ${id} never output ${text}`);
}
