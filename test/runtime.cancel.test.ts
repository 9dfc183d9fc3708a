// The contract of the cancel module (src/runtime/cancel.ts): a cancel racing its task's
// create or claim still ends it `cancelled` before its handler gets past its first
// await; `quietIfEnded` makes "nothing left to cancel" an answer (null) where the strict
// form is 409 task_ended / 404 not_found; another node's cancel stops a run here, one
// heard before the claim is applied at the claim, and a malformed one is a warning.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { z } from 'zod';
import { CancelledError, encodeCancel, sleep } from '../src/core/cancel.ts';
import { httpStatusOf } from '../src/core/error-codes.ts';
import { LeashError } from '../src/core/errors.ts';
import type { Task, TaskEvent } from '../src/core/types.ts';
import { defineTask } from '../src/runtime/define-task.ts';
import { startRuntime, type TestRuntime } from './helpers/runtime.ts';

const OWNER = 'alice';

/** What the handler reached, by task id: called at all, its signal's reason, past its first await. */
const called = new Set<string>();
const abortedWith = new Map<string, string>();
const pastFirstAwait = new Set<string>();
let releaseBlockers: () => void = () => {};
let blockersReleased = new Promise<void>((r) => (releaseBlockers = r));

const probe = defineTask({
  type: 'probe',
  input: z.object({ holdMs: z.number().default(60_000) }).strict(),
  async run(input, ctx) {
    called.add(ctx.taskId);
    try {
      await sleep(input.holdMs, ctx.signal);
    } catch (e) {
      if (e instanceof CancelledError) abortedWith.set(ctx.taskId, e.reason);
      throw e;
    }
    pastFirstAwait.add(ctx.taskId);
    return 'done';
  },
});

/** Holds its slot until the test releases it (not through a cancel). */
const blocker = defineTask({
  type: 'blocker',
  input: z.object({}).strict(),
  async run() {
    await blockersReleased;
    return null;
  },
});

const opened: TestRuntime[] = [];
after(async () => {
  for (const t of opened) await t.close();
});

async function open(opts: Parameters<typeof startRuntime>[1] = {}): Promise<TestRuntime> {
  const t = await startRuntime([probe, blocker], opts);
  opened.push(t);
  return t;
}

async function ended(t: TestRuntime, id: string): Promise<Task> {
  const task = await t.runtime.wait(id, OWNER, 10_000);
  assert.ok(task);
  return task;
}

async function eventTypes(t: TestRuntime, id: string): Promise<string[]> {
  const out: TaskEvent[] = [];
  for await (const e of t.runtime.events(id)) out.push(e);
  return out.map((e) => e.type);
}

function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

describe('cancel module (src/runtime/cancel.ts)', () => {
  it('a cancel issued in the same tick as the create ends the task cancelled before the handler passes its first await', async () => {
    const t = await open();
    const id = 'task_race_create_0001';
    // Not awaited: the create (started eagerly on this node's free slot) and the cancel race.
    const creating = t.runtime.create(OWNER, { id, type: 'probe', input: {} });
    const cancelling = t.runtime.cancel(id, OWNER, 'user');
    const [{ task }, r] = await Promise.all([creating, cancelling]);
    assert.equal(task.id, id);
    assert.equal(r.alreadyCancelled, false);
    const done = await ended(t, id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.cancel?.reason, 'user');
    assert.equal(abortedWith.get(id), 'user', 'its first await was aborted by the cancel');
    assert.ok(!pastFirstAwait.has(id), 'the handler never ran past its first await');
    assert.equal(done.cancel?.detached, undefined, 'it returned on its signal: not detached');
    assert.deepEqual((await eventTypes(t, id)).slice(-2), ['task.cancelling', 'task.cancelled']);
  });

  it('a cancel that came with its create stops the task before its handler is called (started eagerly, or queued)', async () => {
    const t = await open({ concurrency: 1 });
    const eager = await t.runtime.create(OWNER, { type: 'probe', input: {} }, { cancelled: () => 'user' });
    assert.equal((await ended(t, eager.task.id)).status, 'cancelled');
    assert.ok(!called.has(eager.task.id), 'eager: the handler was never called');
    assert.deepEqual(await eventTypes(t, eager.task.id), [
      'task.queued',
      'task.started',
      'task.cancelling',
      'task.cancelled',
    ]);

    blockersReleased = new Promise<void>((r) => (releaseBlockers = r));
    const b = await t.runtime.create(OWNER, { type: 'blocker', input: {} }); // the one slot is taken
    const queued = await t.runtime.create(OWNER, { type: 'probe', input: {} }, { cancelled: () => 'user' });
    assert.equal(queued.task.status, 'cancelled', 'queued: ended at once');
    assert.deepEqual(await eventTypes(t, queued.task.id), ['task.queued', 'task.cancelled']);
    releaseBlockers();
    await ended(t, b.task.id);
    assert.ok(!called.has(queued.task.id), 'queued: the handler was never called');
  });

  it('another node’s cancel heard before this node claims the task is applied at the claim: the handler is never called', async () => {
    const t = await open({ concurrency: 1 });
    blockersReleased = new Promise<void>((r) => (releaseBlockers = r));
    const b = await t.runtime.create(OWNER, { type: 'blocker', input: {} });
    const { task } = await t.runtime.create(OWNER, { type: 'probe', input: {} });
    assert.equal(task.status, 'queued');
    // As a node that cancelled it while (it believed) it ran elsewhere would send it.
    await t.store.notifier.publish('cancel', encodeCancel({ task_id: task.id, reason: 'user' }));
    await sleep(20); // delivered (the local notifier defers to a microtask)
    releaseBlockers(); // the slot frees, the task is claimed
    const done = await ended(t, task.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.cancel?.reason, 'user');
    assert.ok(!called.has(task.id), 'the handler was never called');
    await ended(t, b.task.id);
  });

  it('another node’s cancel stops a run here with its reason', async () => {
    const t = await open();
    const { task } = await t.runtime.create(OWNER, { type: 'probe', input: {} });
    await t.store.notifier.publish('cancel', encodeCancel({ task_id: task.id, reason: 'deadline' }));
    const done = await ended(t, task.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.cancel?.reason, 'deadline');
    assert.equal(abortedWith.get(task.id), 'deadline');
    assert.ok(!pastFirstAwait.has(task.id));
  });

  it('quietIfEnded answers null for an ended or unknown task; the strict form is 409 task_ended / 404 not_found', async () => {
    const t = await open();
    const { task } = await t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 0 } });
    assert.equal((await ended(t, task.id)).status, 'completed');

    assert.equal(await t.runtime.cancel(task.id, OWNER, 'user', { quietIfEnded: true }), null);
    assert.equal(await t.runtime.cancel('task_nope', OWNER, 'user', { quietIfEnded: true }), null);
    assert.equal(await t.runtime.cancel(task.id, 'mallory', 'user', { quietIfEnded: true }), null);
    await assert.rejects(t.runtime.cancel(task.id, OWNER), (e: unknown) => {
      assert.ok(LeashError.is(e, 'task_ended'));
      assert.equal(httpStatusOf(e.code), 409);
      return true;
    });
    await assert.rejects(t.runtime.cancel('task_nope', OWNER), (e: unknown) => {
      assert.ok(LeashError.is(e, 'not_found'));
      assert.equal(httpStatusOf(e.code), 404);
      return true;
    });

    // An active task is cancelled the same either way.
    const live = await t.runtime.create(OWNER, { type: 'probe', input: {} });
    const r = await t.runtime.cancel(live.task.id, OWNER, 'disconnect', { quietIfEnded: true });
    assert.ok(r);
    assert.equal(r.alreadyCancelled, false);
    assert.equal((await ended(t, live.task.id)).cancel?.reason, 'disconnect');
    const again = await t.runtime.cancel(live.task.id, OWNER, 'user', { quietIfEnded: true });
    assert.equal(again?.alreadyCancelled, true, 'a cancelled task is no error in either form');
  });

  it('a malformed cancel notification is ignored with a warning, not a crash', async () => {
    const { logger, lines } = capturingLogger();
    const t = await open({ logger });
    const { task } = await t.runtime.create(OWNER, { type: 'probe', input: {} });
    const bad = [
      `${task.id}:user`, // the old "id:reason" form
      'not json',
      JSON.stringify({ task_id: task.id }),
      JSON.stringify({ task_id: task.id, reason: 'because' }),
      JSON.stringify({ task_id: 42, reason: 'user' }),
      'null',
      '',
    ];
    for (const payload of bad) await t.store.notifier.publish('cancel', payload);
    await sleep(20);
    const warned = lines.filter((l) => l.msg === 'ignored a malformed cancel notification');
    assert.deepEqual(
      warned.map((l) => l.payload),
      bad,
    );
    const still = await t.runtime.get(task.id, OWNER);
    assert.equal(still?.status, 'running', 'none of them stopped the task');
    // The runtime still works: the task cancels, a new one completes.
    await t.runtime.cancel(task.id, OWNER);
    assert.equal((await ended(t, task.id)).status, 'cancelled');
    const next = await t.runtime.create(OWNER, { type: 'probe', input: { holdMs: 0 } });
    assert.equal((await ended(t, next.task.id)).status, 'completed');
  });
});
