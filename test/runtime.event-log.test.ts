// The event log's two clocks: readers hear an event the moment it is appended, the
// store gets events in write-behind batches (at most one batch per window). And the
// runtime's delta coalescing: a burst becomes few `output.delta`s, a slow stream's
// delta is appended at once (not at the end of the loop turn).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { z } from 'zod';
import { sleep } from '../src/core/cancel.ts';
import { defineTask } from '../src/runtime/define-task.ts';
import { EventLog } from '../src/runtime/event-log.ts';
import type { TaskEvent } from '../src/core/types.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import type { EventWrite, Store } from '../src/store/store.ts';
import { SEQ_AHEAD } from '../src/store/store.ts';
import { silentLogger, startRuntime } from './helpers/runtime.ts';
import { eventually } from './helpers/server.ts';
import { newTask } from './store.conformance.ts';

const NOW = '2025-01-01T00:00:01.000Z';

/** An in-memory store with one running task (`task_1`, last seq 2), counting writeEvents batches. */
async function storeWithRunningTask(): Promise<{ store: SqliteStore; batches: number[] }> {
  const store = SqliteStore.open(':memory:');
  await store.migrate();
  await store.createTask(newTask('task_1'), { maxQueuedPerOwner: 10 });
  const [claimed] = await store.claimTasks({ nodeId: 'n', max: 1, maxRunningPerOwner: 10, leaseMs: 60_000, now: NOW });
  assert.equal(claimed?.lastSeq, 2);
  const batches: number[] = [];
  const write = store.writeEvents.bind(store);
  store.writeEvents = (writes: EventWrite[]) => {
    batches.push(writes.length);
    return write(writes);
  };
  return { store, batches };
}

/** Appends deltas seq 3…8, 20 ms apart; returns how many the listener had heard right after each append. */
async function appendSlowly(log: EventLog, heard: TaskEvent[]): Promise<number[]> {
  const seen: number[] = [];
  for (let seq = 3; seq <= 8; seq++) {
    log.append('task_1', seq, { type: 'output.delta', data: { text: `${seq}` } }, { append_output: `${seq}` });
    seen.push(heard.length);
    await sleep(20);
  }
  return seen;
}

describe('EventLog write-behind batches', () => {
  it('with a window, readers hear every event at once and the store gets them in few batches', async () => {
    const { store, batches } = await storeWithRunningTask();
    const log = new EventLog(store, silentLogger, { batchWindowMs: 250 });
    const heard: TaskEvent[] = [];
    const unlisten = log.listen('task_1', (e) => {
      if (typeof e === 'object' && e !== null) heard.push(e);
    });
    try {
      assert.deepEqual(await appendSlowly(log, heard), [1, 2, 3, 4, 5, 6], 'each heard synchronously');
      // ~100 ms in: the first event went out at once, the rest wait for the window.
      assert.deepEqual(batches, [1]);
      assert.deepEqual(
        log.uncommitted('task_1', 2).map((e) => e.seq),
        [4, 5, 6, 7, 8],
        'not yet committed, still readable from memory',
      );
      const t0 = performance.now();
      await log.flush(); // flush() does not wait for the window
      assert.ok(performance.now() - t0 < 200, 'flush() commits at once');
      assert.deepEqual(batches, [1, 5]);
      assert.deepEqual(
        (await store.listEvents('task_1', 2)).map((e) => e.seq),
        [3, 4, 5, 6, 7, 8],
      );
      assert.equal((await store.getTask('task_1'))?.output_text, '345678');
    } finally {
      unlisten();
      await store.close();
    }
  });

  it('without a window, each event is committed as soon as the store is free', async () => {
    const { store, batches } = await storeWithRunningTask();
    const log = new EventLog(store, silentLogger);
    try {
      await appendSlowly(log, []);
      await log.flush();
      assert.deepEqual(batches, [1, 1, 1, 1, 1, 1]);
    } finally {
      await store.close();
    }
  });
});

describe('checkpoints and the batch window', () => {
  let checkpointed: (() => void) | null = null;
  const chunked = defineTask({
    type: 'chunked',
    input: z.object({}).strict(),
    async run(_input, ctx) {
      ctx.emit('part ');
      ctx.emit('one'); // same turn: coalesced, still pending when the checkpoint comes
      await ctx.checkpoint({ done: 1 });
      checkpointed?.();
      await sleep(5_000, ctx.signal);
      return null;
    },
  });

  it('the output emitted before a checkpoint is stored by the time the checkpoint is', async () => {
    const t = await startRuntime([chunked], { eventBatchMs: 60_000 });
    try {
      const saved = new Promise<void>((r) => (checkpointed = r));
      const { task } = await t.runtime.create('alice', { type: 'chunked', input: {} });
      await saved;
      // A crash now would resume from { done: 1 } without emitting "part one" again: its
      // delta is stored, not left in memory for the window.
      const stored = await t.store.listEvents(task.id, 0);
      assert.equal(
        stored
          .filter((e) => e.type === 'output.delta')
          .map((e) => (e.data as { text: string }).text)
          .join(''),
        'part one',
      );
      // The row's output_text is saved about once a second while text streams
      // (OUTPUT_SAVE_MS); recovery after a crash rebuilds it from those events.
      const [row] = await t.store.recoverLost({
        nodeId: t.runtime.nodeId,
        resumableTypes: [],
        now: new Date().toISOString(),
      });
      assert.equal(row?.id, task.id);
      assert.equal(row?.output_text, 'part one');
      await t.runtime.cancel(task.id, 'alice');
    } finally {
      await t.close();
    }
  });
});

describe('EventLog and a closed store', () => {
  it('gives up on a store closed for good: flush() returns, later appends do not retry forever', async () => {
    const { store, batches } = await storeWithRunningTask();
    const errors: string[] = [];
    const log = new EventLog(
      store,
      pino({ level: 'error' }, { write: (line: string) => void errors.push(JSON.parse(line).msg as string) }),
    );
    await store.close();
    log.append('task_1', 3, { type: 'output.delta', data: { text: 'x' } });
    await log.flush();
    assert.equal(log.pendingCount, 0);
    log.append('task_1', 4, { type: 'output.delta', data: { text: 'y' } });
    await log.flush();
    await sleep(50);
    assert.equal(batches.length, 2, 'one attempt per batch, no retries');
    assert.deepEqual(errors, [
      'the store was closed before these task events were written',
      'the store was closed before these task events were written',
    ]);
  });
});

describe('output.delta coalescing', () => {
  const talker = defineTask({
    type: 'talker',
    input: z.object({}).strict(),
    async run(_input, ctx) {
      // A burst in one loop turn, then a pause, then a lone delta, then another burst.
      for (const t of ['a', 'b', 'c']) ctx.emit(t);
      await sleep(30);
      ctx.emit('d');
      await sleep(30);
      for (const t of ['e', 'f', 'g']) ctx.emit(t);
      return null;
    },
  });

  it('a burst is coalesced; the first delta after a pause is appended at once', async () => {
    const t = await startRuntime([talker]);
    try {
      const { task } = await t.runtime.create('alice', { type: 'talker', input: {} });
      await t.runtime.wait(task.id, 'alice', 5000);
      const deltas: string[] = [];
      for await (const e of t.runtime.events(task.id, {})) {
        if (e.type === 'output.delta') deltas.push((e.data as { text: string }).text);
      }
      // The first of each burst goes out alone (it came after a pause); the rest of
      // the turn follows as one delta.
      assert.deepEqual(deltas, ['a', 'bc', 'd', 'e', 'fg']);
    } finally {
      await t.close();
    }
  });
});

describe('EventLog: seqs handed out stay within SEQ_AHEAD of the last commit', () => {
  it('a task past half its SEQ_AHEAD is committed without waiting for the window, so a burst is not held back', async () => {
    const { store, batches } = await storeWithRunningTask();
    const log = new EventLog(store, silentLogger, { batchWindowMs: 10_000 });
    log.track('task_1', 2);
    const heard: number[] = [];
    const unlisten = log.listen('task_1', (e) => {
      if (typeof e === 'object' && e !== null) heard.push(e.seq);
    });
    try {
      log.append('task_1', 3, { type: 'output.delta', data: { text: 'x' } }, { append_output: 'x' });
      // The first batch goes at once (however loaded the machine); the next waits for the 10 s window.
      await eventually(async () => batches.length === 1, 5000);
      assert.deepEqual(batches, [1]);
      const last = 3 + SEQ_AHEAD; // within the window after that commit (3 + SEQ_AHEAD)…
      for (let seq = 4; seq <= last; seq++) {
        log.append('task_1', seq, { type: 'output.delta', data: { text: 'x' } }, { append_output: 'x' });
      }
      // …and past half of it: committed now, not in 10 s.
      await eventually(async () => batches.length === 2, 2000);
      assert.equal(heard.length, last - 2, 'nothing held back');
      await log.flush();
      log.untrack('task_1');
    } finally {
      unlisten();
      await store.close();
    }
  });

  it('events past last commit + SEQ_AHEAD wait, unseen, until a commit moves the window; then they come in order', async () => {
    const { store } = await storeWithRunningTask();
    // The store takes the first batch but does not answer (a commit that takes its time).
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const write = store.writeEvents.bind(store);
    store.writeEvents = async (writes: EventWrite[]) => {
      await gate;
      return write(writes);
    };
    const log = new EventLog(store, silentLogger, { batchWindowMs: 0 });
    log.track('task_1', 2);
    const heard: number[] = [];
    const unlisten = log.listen('task_1', (e) => {
      if (typeof e === 'object' && e !== null) heard.push(e.seq);
    });
    try {
      const last = 2 + SEQ_AHEAD + 10;
      for (let seq = 3; seq <= last; seq++) {
        log.append('task_1', seq, { type: 'output.delta', data: { text: 'x' } }, { append_output: 'x' });
      }
      // Delivered (to listeners and to readers catching up from memory) only up to 2 + SEQ_AHEAD:
      // a crash now loses at most those, and recovery writes above them.
      assert.equal(heard.at(-1), 2 + SEQ_AHEAD);
      assert.equal(heard.length, SEQ_AHEAD);
      assert.equal(log.uncommitted('task_1', 0).at(-1)?.seq, 2 + SEQ_AHEAD);
      release();
      await log.flush();
      assert.equal(heard.length, last - 2, 'the held events came once the window moved');
      assert.ok(
        heard.every((s, i) => s === i + 3),
        'in seq order, each once',
      );
      assert.deepEqual(
        (await store.listEvents('task_1', 0)).map((e) => e.seq),
        Array.from({ length: last }, (_, i) => i + 1),
      );
      log.untrack('task_1');
    } finally {
      unlisten();
      await store.close();
    }
  });
});

describe('EventLog: the batch window grows with the tasks a batch writes', () => {
  /** A store that takes every batch at once (the window is about when batches start). */
  const fakeStore = (): Store => ({ kind: 'sqlite', writeEvents: async () => {} }) as unknown as Store;
  const batchOf = async (log: EventLog, tasks: number): Promise<void> => {
    for (let i = 0; i < tasks; i++) log.append(`t${i}`, 3, { type: 'output.delta', data: { text: 'x' } });
    await log.flush();
  };

  it('1 ms more per task of the last batch, up to 5 × the base; a base of 0 stays 0', async () => {
    const log = new EventLog(fakeStore(), silentLogger, { batchWindowMs: 100 });
    assert.equal(log.batchWindowMs, 100);
    await batchOf(log, 1);
    assert.equal(log.batchWindowMs, 101);
    await batchOf(log, 300);
    assert.equal(log.batchWindowMs, 400);
    await batchOf(log, 2000);
    assert.equal(log.batchWindowMs, 500, 'capped');
    await batchOf(log, 3);
    assert.equal(log.batchWindowMs, 103, 'and back down when fewer tasks stream');

    const pg = new EventLog(fakeStore(), silentLogger, { batchWindowMs: 0 });
    await batchOf(pg, 300);
    assert.equal(pg.batchWindowMs, 0);
    const capped = new EventLog(fakeStore(), silentLogger, { batchWindowMs: 100, maxBatchWindowMs: 150 });
    await batchOf(capped, 300);
    assert.equal(capped.batchWindowMs, 150);
  });
});

describe("the task row's output_text while text streams (OUTPUT_SAVE_MS)", () => {
  let step: (() => void) | null = null;
  const stepper = defineTask({
    type: 'stepper',
    input: z.object({}).strict(),
    async run(_input, ctx) {
      ctx.emit('a');
      await sleep(20);
      ctx.emit('b');
      ctx.progress(50, 'half');
      await new Promise<void>((r) => (step = r));
      ctx.emit('c');
      await sleep(20);
      ctx.emit('d');
      return null;
    },
  });

  it('is saved with every other patch (progress, the end), so the ended row holds all the text', async () => {
    const t = await startRuntime([stepper]);
    try {
      const { task } = await t.runtime.create('alice', { type: 'stepper', input: {} });
      // The progress patch carries the text emitted before it.
      await eventually(async () => (await t.store.getTask(task.id))?.progress === 50);
      assert.equal((await t.store.getTask(task.id))?.output_text, 'ab');
      await eventually(async () => step !== null);
      step!();
      const done = await t.runtime.wait(task.id, 'alice', 5000);
      assert.equal(done?.status, 'completed');
      const row = await t.store.getTask(task.id);
      assert.equal(row?.output_text, 'abcd', 'the end carries the text not saved yet');
      const deltas = (await t.store.listEvents(task.id, 0)).filter((e) => e.type === 'output.delta');
      assert.equal(deltas.map((e) => (e.data as { text: string }).text).join(''), 'abcd');
    } finally {
      await t.close();
    }
  });
});
