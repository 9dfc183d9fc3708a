// The behaviour every Store must show, whatever it is built on. Each store's test file
// calls runStoreConformance with a factory that yields a fresh, migrated, empty store.
// Only the Store interface is used here: no SQL, no knowledge of the schema.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { LeashError } from '../src/core/errors.ts';
import { newId } from '../src/core/ids.ts';
import type { Task, TaskEvent, TaskStatus } from '../src/core/types.ts';
import type { CreateTaskOptions, CreateTaskResult, NewTask, Store } from '../src/store/store.ts';
import { SEQ_AHEAD } from '../src/store/store.ts';

const BASE = Date.UTC(2025, 0, 1);
/** A fixed, readable timeline: iso(0) = 2025-01-01T00:00:00.000Z, one unit = one second. */
const iso = (s: number): string => new Date(BASE + s * 1000).toISOString();

const ROOMY: CreateTaskOptions = { maxQueuedPerOwner: 10_000 };
const nodeLostMessage = (seq: number): string =>
  `the node running this task stopped before it finished; any output it streamed after seq ${seq} was lost with it`;

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A queued task for `alice` at a fixed time; the store test files build on it too. */
export const newTask = (id: string, over: Partial<NewTask> = {}): NewTask => ({
  id,
  type: 'echo',
  owner: 'alice',
  input: { id },
  input_hash: 'h',
  priority: 0,
  thread_id: null,
  deadline_at: null,
  created_at: '2025-01-01T00:00:00.000Z',
  idempotency_key: null,
  options: null,
  ...over,
});

export function runStoreConformance(name: string, makeStore: () => Promise<Store>): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;
    let clock = 0;

    beforeEach(async () => {
      store = await makeStore();
      clock = 0;
    });
    afterEach(async () => {
      await store.close().catch(() => {});
    });

    /** A task with a new id, one tick later than the last. */
    const nextTask = (over: Partial<NewTask> = {}): NewTask =>
      newTask(newId('task'), { input: { text: 'hi' }, input_hash: 'hash-1', created_at: iso(++clock), ...over });

    async function create(over: Partial<NewTask> = {}): Promise<Task> {
      const res = await store.createTask(nextTask(over), ROOMY);
      assert.equal(res.kind, 'created');
      return (res as { task: Task }).task;
    }

    it('a closed store rejects every call with store_closed (closed for good, unlike store_unavailable)', async () => {
      await create();
      await store.close();
      await store.close(); // twice is fine
      const closed = (e: unknown): boolean => LeashError.is(e, 'store_closed');
      await assert.rejects(store.listTasks({ owner: 'alice' }), closed);
      await assert.rejects(store.createTask(nextTask(), ROOMY), closed);
      await assert.rejects(
        store.writeEvents([
          { event: { task_id: 'task_x', seq: 1, type: 'output.delta', data: { text: 'x' }, created_at: iso(1) } },
        ]),
        closed,
      );
    });

    const claim = (
      over: { nodeId?: string; max?: number; maxRunningPerOwner?: number; now?: string; leaseMs?: number } = {},
    ) =>
      store.claimTasks({
        nodeId: over.nodeId ?? 'node-1',
        max: over.max ?? 100,
        maxRunningPerOwner: over.maxRunningPerOwner ?? 100,
        leaseMs: over.leaseMs ?? 30_000,
        now: over.now ?? iso(1000),
      });

    /** Writes a terminal `task.completed` with its patch, as a running node does. */
    async function complete(id: string, seq: number, result: unknown, at = iso(2000)): Promise<void> {
      await store.writeEvents([
        {
          event: { task_id: id, seq, type: 'task.completed', data: { result }, created_at: at },
          patch: { status: 'completed', result, ended_at: at, progress: 100 },
        },
      ]);
    }

    const types = (events: TaskEvent[]) => events.map((e) => `${e.seq}:${e.type}`);

    // ── lifecycle ──────────────────────────────────────────────────────────

    it('migrate can be called again on a live store', async () => {
      const t = await create();
      await store.migrate();
      assert.deepEqual(await store.getTask(t.id), t);
      await store.ping();
    });

    it('close makes further calls reject instead of crashing; closing twice is fine', async () => {
      await create();
      await store.close();
      await assert.rejects(store.getTask('task_x'));
      await assert.rejects(store.createTask(nextTask(), ROOMY));
      await assert.rejects(store.ping());
      await store.close();
    });

    // ── create / get ───────────────────────────────────────────────────────

    it('creates a queued task with its task.queued event, and hides it from other owners', async () => {
      const input = { text: 'héllo ✓', nested: { list: [1, 2.5, null, true] } };
      const nt = nextTask({ input, priority: 3, deadline_at: iso(500), type: 'summarize' });
      const res = await store.createTask(nt, ROOMY);
      assert.equal(res.kind, 'created');
      const expected: Task = {
        id: nt.id,
        type: 'summarize',
        status: 'queued',
        progress: null,
        progress_message: null,
        input,
        result: null,
        output_text: '',
        error: null,
        cancel: null,
        priority: 3,
        thread_id: null,
        owner: 'alice',
        created_at: nt.created_at,
        started_at: null,
        ended_at: null,
        deadline_at: iso(500),
      };
      assert.deepEqual((res as { task: Task }).task, expected);
      assert.deepEqual(await store.getTask(nt.id), expected);
      assert.deepEqual(await store.getTask(nt.id, 'alice'), expected);
      assert.equal(await store.getTask(nt.id, 'bob'), null);
      assert.equal(await store.getTask('task_missing'), null);
      assert.deepEqual(await store.listEvents(nt.id, 0), [
        { task_id: nt.id, seq: 1, type: 'task.queued', data: {}, created_at: nt.created_at },
      ]);
    });

    it('idempotency key: same owner gets the earlier task, another owner gets a new one', async () => {
      const first = await store.createTask(nextTask({ idempotency_key: 'k1', input: { v: 1 } }), ROOMY);
      assert.equal(first.kind, 'created');
      const firstTask = (first as { task: Task }).task;

      const again = await store.createTask(nextTask({ idempotency_key: 'k1', input: { v: 2 } }), ROOMY);
      assert.equal(again.kind, 'existing');
      assert.deepEqual((again as { task: Task }).task, firstTask);

      const bob = await store.createTask(nextTask({ idempotency_key: 'k1', owner: 'bob' }), ROOMY);
      assert.equal(bob.kind, 'created');
      assert.notEqual((bob as { task: Task }).task.id, firstTask.id);

      // No key: never deduplicated.
      await create();
      await create();
      assert.equal((await store.listTasks({ owner: 'alice' })).data.length, 3);
      assert.equal((await store.listTasks({ owner: 'bob' })).data.length, 1);

      // A full queue still answers a repeated key with the existing task.
      const full = await store.createTask(nextTask({ idempotency_key: 'k1' }), { maxQueuedPerOwner: 1 });
      assert.equal(full.kind, 'existing');
    });

    it('queue_full counts only the owner’s queued tasks', async () => {
      const opts = { maxQueuedPerOwner: 2 };
      assert.equal((await store.createTask(nextTask(), opts)).kind, 'created');
      assert.equal((await store.createTask(nextTask(), opts)).kind, 'created');
      const third = nextTask();
      assert.deepEqual(await store.createTask(third, opts), { kind: 'queue_full', queued: 2 });
      assert.equal(await store.getTask(third.id), null, 'a rejected task is not stored');
      assert.equal((await store.createTask(nextTask({ owner: 'bob' }), opts)).kind, 'created');

      // Running tasks do not count against the queue.
      assert.equal((await claim({ max: 1 })).length, 1);
      assert.equal((await store.createTask(nextTask(), opts)).kind, 'created');
      assert.equal((await store.createTask(nextTask(), opts)).kind, 'queue_full');
    });

    // ── listing ────────────────────────────────────────────────────────────

    it('lists newest first with a cursor: no duplicates, no gaps, filters applied', async () => {
      const mine: Task[] = [];
      for (let i = 0; i < 7; i++) mine.push(await create({ type: i % 2 === 0 ? 'even' : 'odd' }));
      await create({ owner: 'bob' });
      await create({ owner: 'bob' });

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.listTasks({ owner: 'alice', limit: 3, ...(cursor ? { cursor } : {}) });
        assert.ok(page.data.length <= 3);
        seen.push(...page.data.map((t) => t.id));
        cursor = page.next_cursor ?? undefined;
        pages++;
        assert.ok(pages <= 3, 'pagination must end');
      } while (cursor);
      assert.equal(pages, 3);
      assert.deepEqual(seen, mine.map((t) => t.id).reverse());

      const odd = await store.listTasks({ owner: 'alice', type: 'odd', limit: 2 });
      assert.deepEqual(
        odd.data.map((t) => t.id),
        [mine[5]!.id, mine[3]!.id],
      );
      assert.notEqual(odd.next_cursor, null);
      const odd2 = await store.listTasks({ owner: 'alice', type: 'odd', limit: 2, cursor: odd.next_cursor! });
      assert.deepEqual(
        odd2.data.map((t) => t.id),
        [mine[1]!.id],
      );
      assert.equal(odd2.next_cursor, null);

      // Exactly one page's worth: no phantom next page.
      const exact = await store.listTasks({ owner: 'alice', type: 'even', limit: 4 });
      assert.equal(exact.data.length, 4);
      assert.equal(exact.next_cursor, null);

      // Status filter: claim the two oldest (FIFO).
      await claim({ max: 2 });
      const running = await store.listTasks({ owner: 'alice', status: ['running'] });
      assert.deepEqual(
        running.data.map((t) => t.id),
        [mine[1]!.id, mine[0]!.id],
      );
      const both = await store.listTasks({ owner: 'alice', status: ['running', 'queued'] });
      assert.equal(both.data.length, 7);

      assert.deepEqual((await store.listTasks({ owner: 'carol' })).data, []);
      await assert.rejects(store.listTasks({ owner: 'alice', cursor: 'not-a-cursor!' }));
    });

    it('list filters by thread and clamps the limit (default 50, max 200)', async () => {
      await store.createThread({ id: 'thr_a', owner: 'alice', created_at: iso(0), metadata: {} });
      const inThread = await create({ thread_id: 'thr_a' });
      for (let i = 0; i < 205; i++) await create();
      const byThread = await store.listTasks({ owner: 'alice', thread_id: 'thr_a' });
      assert.deepEqual(
        byThread.data.map((t) => t.id),
        [inThread.id],
      );
      const def = await store.listTasks({ owner: 'alice' });
      assert.equal(def.data.length, 50);
      assert.notEqual(def.next_cursor, null);
      const big = await store.listTasks({ owner: 'alice', limit: 10_000 });
      assert.equal(big.data.length, 200);
      const rest = await store.listTasks({ owner: 'alice', limit: 10_000, cursor: big.next_cursor! });
      assert.equal(rest.data.length, 6);
      assert.equal(rest.next_cursor, null);
    });

    // ── claiming ───────────────────────────────────────────────────────────

    // ── eager start (createTask with startOn) ────────────────────────────────

    const startOn = (over: { maxRunningPerOwner?: number } = {}) => ({
      maxQueuedPerOwner: 10_000,
      startOn: { nodeId: 'n1', maxRunningPerOwner: over.maxRunningPerOwner ?? 10, leaseMs: 30_000, now: iso(500) },
    });

    it('eager start: a task a claim would take next is created running, queued and started in one commit', async () => {
      const res = await store.createTask(nextTask({ priority: 3 }), startOn());
      assert.equal(res.kind, 'created');
      const { task, started } = res as Extract<CreateTaskResult, { kind: 'created' }>;
      assert.ok(started, 'started for n1');
      assert.equal(task.status, 'running');
      assert.equal(task.started_at, iso(500));
      assert.deepEqual(
        { lastSeq: started.lastSeq, checkpoint: started.checkpoint, id: started.task.id },
        { lastSeq: 2, checkpoint: null, id: task.id },
      );
      assert.deepEqual(
        (await store.listEvents(task.id, 0)).map((e) => [e.seq, e.type, e.data]),
        [
          [1, 'task.queued', {}],
          [2, 'task.started', { attempt: 1 }],
        ],
      );
      // It is n1's like a claimed task: its lease is renewed by n1 and nobody claims it.
      assert.deepEqual(await claim({ nodeId: 'n2' }), []);
      const renewal = await store.renewLeases('n1', 30_000, iso(600), [task.id]);
      assert.deepEqual(renewal, { cancelling: [], lost: [] });
      assert.equal((await store.getTask(task.id))?.status, 'running');
    });

    it('eager start only when a claim would take it next: otherwise the task is queued as usual', async () => {
      // A task queued at the same priority or above comes first.
      const older = await create({ priority: 2 });
      for (const p of [2, 1]) {
        const res = await store.createTask(nextTask({ priority: p }), startOn());
        assert.equal(res.kind === 'created' && res.started, undefined, `priority ${p} behind a queued 2`);
        assert.equal((res as { task: Task }).task.status, 'queued');
      }
      // Above every queued task: it goes first anyway.
      const high = await store.createTask(nextTask({ priority: 3 }), startOn());
      assert.ok(high.kind === 'created' && high.started);
      // Its owner at the running limit (1, taken by `high`): queued, and so are thread tasks.
      await claim({ max: 100 }); // everything else running
      const limited = await store.createTask(nextTask({ priority: 9 }), startOn({ maxRunningPerOwner: 1 }));
      assert.equal((limited as { task: Task }).task.status, 'queued');
      await store.createThread({ id: 'thr_e', owner: 'alice', created_at: iso(0), metadata: {} });
      const bob = (over: Partial<NewTask>) => nextTask({ owner: 'bob', priority: 50, ...over });
      const inThread = await store.createTask(bob({ thread_id: 'thr_e', owner: 'alice' }), startOn());
      assert.equal((inThread as { task: Task }).task.status, 'queued');
      // Another owner, nothing queued at 50 or above: started.
      assert.ok((await store.createTask(bob({}), startOn())).kind === 'created');
      assert.equal((await store.getTask(older.id))?.status, 'running');
    });

    it('eager start keeps queue limits and Idempotency-Key replays', async () => {
      const first = await store.createTask(nextTask({ idempotency_key: 'k1' }), startOn());
      assert.ok(first.kind === 'created' && first.started);
      const again = await store.createTask(nextTask({ idempotency_key: 'k1' }), startOn());
      assert.equal(again.kind, 'existing');
      assert.equal((again as { task: Task }).task.id, first.task.id);
      await create({ priority: 5 }); // queued, and ahead of the next one
      const full = await store.createTask(nextTask(), { ...startOn(), maxQueuedPerOwner: 1 });
      assert.deepEqual(full, { kind: 'queue_full', queued: 1 });
    });

    it('claims by priority, then FIFO, and appends task.started', async () => {
      const a = await create({ priority: 0 });
      const b = await create({ priority: 5 });
      const c = await create({ priority: 0 });
      const d = await create({ priority: 5 });
      const e = await create({ priority: 1 });

      assert.deepEqual(await claim({ max: 0 }), []);
      const first = await claim({ max: 2, nodeId: 'n1', now: iso(100) });
      assert.deepEqual(
        first.map((r) => r.task.id),
        [b.id, d.id],
      );
      for (const r of first) {
        assert.equal(r.task.status, 'running');
        assert.equal(r.task.started_at, iso(100));
        assert.equal(r.lastSeq, 2);
        assert.equal(r.checkpoint, null);
        assert.deepEqual(await store.listEvents(r.task.id, 1), [
          { task_id: r.task.id, seq: 2, type: 'task.started', data: { attempt: 1 }, created_at: iso(100) },
        ]);
      }
      assert.equal((await store.getTask(a.id))!.status, 'queued');

      const rest = await claim({ now: iso(101) });
      assert.deepEqual(
        rest.map((r) => r.task.id),
        [e.id, a.id, c.id],
      );
      assert.deepEqual(await claim(), []);
    });

    it('honours the per-owner running limit (cancelling counts as running)', async () => {
      const a1 = await create();
      const a2 = await create();
      const a3 = await create();
      const b1 = await create({ owner: 'bob' });

      const got = await claim({ maxRunningPerOwner: 2 });
      assert.deepEqual(got.map((r) => r.task.id).sort(), [a1.id, a2.id, b1.id].sort());
      assert.deepEqual(await claim({ maxRunningPerOwner: 2 }), []);

      // A stop was asked for but the work has not stopped: the slot is still taken.
      assert.notEqual(await store.requestCancel(a1.id, 'user', iso(50)), null);
      assert.deepEqual(await claim({ maxRunningPerOwner: 2 }), []);

      await complete(a2.id, 3, 'done');
      const next = await claim({ maxRunningPerOwner: 2 });
      assert.deepEqual(
        next.map((r) => r.task.id),
        [a3.id],
      );
    });

    it('a deep backlog of an owner at its limit does not starve other owners', async () => {
      const alice: Task[] = [];
      for (let i = 0; i < 300; i++) alice.push(await create());
      const bob = await create({ owner: 'bob' });
      const got = await claim({ max: 3, maxRunningPerOwner: 1 });
      assert.deepEqual(
        got.map((r) => r.task.id),
        [alice[0]!.id, bob.id],
      );
      assert.deepEqual(await claim({ max: 3, maxRunningPerOwner: 1 }), []);
    });

    it('runs a thread’s tasks one at a time, oldest first, whatever their priority', async () => {
      await store.createThread({ id: 'thr_1', owner: 'alice', created_at: iso(0), metadata: {} });
      const t1 = await create({ thread_id: 'thr_1', priority: 0 });
      const t2 = await create({ thread_id: 'thr_1', priority: 10 });
      const t3 = await create({ thread_id: 'thr_1', priority: 10 });
      const free = await create({ priority: 5 });

      const got = await claim();
      assert.deepEqual(
        got.map((r) => r.task.id),
        [free.id, t1.id],
      );
      assert.deepEqual(await claim(), [], 'thread busy while t1 runs');

      assert.notEqual(await store.requestCancel(t1.id, 'interrupted', iso(60)), null);
      assert.deepEqual(await claim(), [], 'thread busy while t1 is cancelling');

      await store.writeEvents([
        {
          event: {
            task_id: t1.id,
            seq: 3,
            type: 'task.cancelled',
            data: { reason: 'interrupted', output_text: '' },
            created_at: iso(61),
          },
          patch: { status: 'cancelled', ended_at: iso(61) },
        },
      ]);
      assert.deepEqual(
        (await claim()).map((r) => r.task.id),
        [t2.id],
      );
      assert.equal((await store.getTask(t3.id))!.status, 'queued');
    });

    it('a thread’s older task held back by the owner limit also holds back its newer ones', async () => {
      await store.createThread({ id: 'thr_2', owner: 'alice', created_at: iso(0), metadata: {} });
      const busy = await create();
      const older = await create({ thread_id: 'thr_2' });
      const newer = await create({ thread_id: 'thr_2', priority: 9 });
      assert.deepEqual(
        (await claim({ maxRunningPerOwner: 1 })).map((r) => r.task.id),
        [busy.id],
      );
      assert.deepEqual(await claim({ maxRunningPerOwner: 1 }), []);
      await complete(busy.id, 3, null);
      assert.deepEqual(
        (await claim({ maxRunningPerOwner: 1 })).map((r) => r.task.id),
        [older.id],
      );
      assert.equal((await store.getTask(newer.id))!.status, 'queued');
    });

    // ── events ─────────────────────────────────────────────────────────────

    it('writeEvents appends events and applies their patches; listEvents pages by seq', async () => {
      const t = await create();
      const other = await create();
      await claim({ now: iso(10) });
      const ev = (task_id: string, seq: number, type: string, data: unknown): TaskEvent =>
        ({ task_id, seq, type, data, created_at: iso(10 + seq) }) as TaskEvent;

      await store.writeEvents([
        {
          event: ev(t.id, 3, 'task.progress', { progress: 40, message: 'reading' }),
          patch: { progress: 40, progress_message: 'reading' },
        },
        { event: ev(t.id, 4, 'output.delta', { text: 'Hel' }), patch: { append_output: 'Hel' } },
        { event: ev(other.id, 3, 'output.delta', { text: 'x' }), patch: { append_output: 'x' } },
        { event: ev(t.id, 5, 'output.delta', { text: 'lo' }), patch: { append_output: 'lo' } },
      ]);
      let got = (await store.getTask(t.id))!;
      assert.equal(got.status, 'running');
      assert.equal(got.progress, 40);
      assert.equal(got.progress_message, 'reading');
      assert.equal(got.output_text, 'Hello');
      assert.equal((await store.getTask(other.id))!.output_text, 'x');

      await store.writeEvents([
        { event: ev(t.id, 6, 'output.delta', { text: ', world' }), patch: { append_output: ', world' } },
      ]);
      assert.equal((await store.getTask(t.id))!.output_text, 'Hello, world');

      assert.deepEqual(types(await store.listEvents(t.id, 0)), [
        '1:task.queued',
        '2:task.started',
        '3:task.progress',
        '4:output.delta',
        '5:output.delta',
        '6:output.delta',
      ]);
      assert.deepEqual(types(await store.listEvents(t.id, 4)), ['5:output.delta', '6:output.delta']);
      assert.deepEqual(types(await store.listEvents(t.id, 1, 2)), ['2:task.started', '3:task.progress']);
      assert.deepEqual(await store.listEvents(t.id, 6), []);
      assert.deepEqual((await store.listEvents(t.id, 3, 1))[0], ev(t.id, 4, 'output.delta', { text: 'Hel' }));

      // An event without a patch leaves the row alone (but still counts for last_seq).
      await store.writeEvents([{ event: ev(t.id, 7, 'task.progress', { progress: null, message: null }) }]);
      got = (await store.getTask(t.id))!;
      assert.equal(got.progress, 40);

      // Terminal patch.
      const result = { summary: 'ok', items: [1, 2] };
      await store.writeEvents([
        {
          event: ev(t.id, 8, 'task.completed', { result }),
          patch: { status: 'completed', result, ended_at: iso(99), progress: 100, progress_message: null },
        },
      ]);
      got = (await store.getTask(t.id))!;
      assert.equal(got.status, 'completed');
      assert.deepEqual(got.result, result);
      assert.equal(got.ended_at, iso(99));
      assert.equal(got.progress, 100);
      assert.equal(got.progress_message, null);
      assert.equal(got.output_text, 'Hello, world');
      assert.equal(got.error, null);

      await store.writeEvents([]);
    });

    it('writeEvents is all-or-nothing: a duplicate seq rejects the whole batch', async () => {
      const t = await create();
      await claim();
      await store.writeEvents([
        {
          event: { task_id: t.id, seq: 3, type: 'output.delta', data: { text: 'a' }, created_at: iso(3) },
          patch: { append_output: 'a' },
        },
      ]);
      await assert.rejects(
        store.writeEvents([
          {
            event: { task_id: t.id, seq: 4, type: 'output.delta', data: { text: 'b' }, created_at: iso(4) },
            patch: { append_output: 'b' },
          },
          {
            event: { task_id: t.id, seq: 3, type: 'output.delta', data: { text: 'c' }, created_at: iso(4) },
            patch: { append_output: 'c' },
          },
        ]),
      );
      assert.deepEqual(types(await store.listEvents(t.id, 0)), ['1:task.queued', '2:task.started', '3:output.delta']);
      assert.equal((await store.getTask(t.id))!.output_text, 'a');
    });

    it('writeEvents records failure errors and cancel info from patches', async () => {
      const f = await create();
      const c = await create();
      await claim();
      const error = { code: 'handler_error', message: 'boom', details: { line: 3 } };
      await store.writeEvents([
        {
          event: { task_id: f.id, seq: 3, type: 'task.failed', data: { error }, created_at: iso(5) },
          patch: { status: 'failed', error, ended_at: iso(5) },
        },
        {
          event: { task_id: c.id, seq: 3, type: 'task.cancelling', data: { reason: 'deadline' }, created_at: iso(5) },
          patch: { status: 'cancelling', cancel: { reason: 'deadline', requested_at: iso(5) } },
        },
      ]);
      const failed = (await store.getTask(f.id))!;
      assert.equal(failed.status, 'failed');
      assert.deepEqual(failed.error, error);
      const cancelling = (await store.getTask(c.id))!;
      assert.equal(cancelling.status, 'cancelling');
      assert.deepEqual(cancelling.cancel, { reason: 'deadline', requested_at: iso(5) });
    });

    // ── cancelling ─────────────────────────────────────────────────────────

    it('cancelQueued cancels only a queued task, appending task.cancelled', async () => {
      const run = await create();
      const r = await create();
      await claim({ max: 1 });
      assert.equal((await store.getTask(run.id))!.status, 'running'); // FIFO: the older one runs
      const cancelled = await store.cancelQueued(r.id, 'user', iso(70));
      assert.ok(cancelled);
      assert.equal(cancelled.status, 'cancelled');
      assert.deepEqual(cancelled.cancel, { reason: 'user', requested_at: iso(70) });
      assert.equal(cancelled.ended_at, iso(70));
      assert.deepEqual(await store.getTask(r.id), cancelled);
      assert.deepEqual(await store.listEvents(r.id, 1), [
        {
          task_id: r.id,
          seq: 2,
          type: 'task.cancelled',
          data: { reason: 'user', output_text: '' },
          created_at: iso(70),
        },
      ]);

      assert.equal(await store.cancelQueued(r.id, 'user', iso(71)), null, 'already cancelled');
      assert.equal(await store.cancelQueued(run.id, 'user', iso(71)), null, 'running is not queued');
      assert.equal((await store.getTask(run.id))!.status, 'running');
      assert.equal((await store.listEvents(run.id, 0)).length, 2);
      assert.equal(await store.cancelQueued('task_missing', 'user', iso(71)), null);
    });

    it('a queued task past its deadline is never claimed, and expireQueued ends it cancelled (deadline)', async () => {
      const late = await create({ deadline_at: iso(50), priority: 5 }); // first in claim order
      const soon = await create({ deadline_at: iso(200) });
      const never = await create({ deadline_at: null });
      assert.deepEqual(await store.expireQueued(iso(49)), [], 'nothing due yet');
      // At 100 `late` is past its deadline: the claim skips it even though the reaper has not run.
      const got = await claim({ max: 1, now: iso(100) });
      assert.deepEqual(
        got.map((r) => r.task.id),
        [soon.id],
      );
      assert.equal((await store.getTask(late.id))!.status, 'queued');

      const ended = await store.expireQueued(iso(101));
      assert.deepEqual(
        ended.map((t) => t.id),
        [late.id],
      );
      const t = (await store.getTask(late.id))!;
      assert.equal(t.status, 'cancelled');
      assert.deepEqual(t.cancel, { reason: 'deadline', requested_at: iso(50) });
      assert.equal(t.ended_at, iso(101));
      assert.equal(t.started_at, null);
      assert.deepEqual(ended[0], t);
      assert.deepEqual(await store.listEvents(late.id, 0), [
        { task_id: late.id, seq: 1, type: 'task.queued', data: {}, created_at: late.created_at },
        {
          task_id: late.id,
          seq: 2,
          type: 'task.cancelled',
          data: { reason: 'deadline', output_text: '' },
          created_at: iso(101),
        },
      ]);
      // Running tasks past their deadline are the running node's business; no-deadline tasks never expire.
      assert.deepEqual(await store.expireQueued(iso(10_000)), []);
      assert.equal((await store.getTask(soon.id))!.status, 'running');
      assert.equal((await store.getTask(never.id))!.status, 'queued');
      assert.equal(await store.cancelQueued(late.id, 'user', iso(102)), null, 'ended for good');
    });

    it('markDetached shows as cancel.detached', async () => {
      const t = await create();
      await claim({ max: 1 });
      await store.requestCancel(t.id, 'user', iso(60));
      await store.markDetached(t.id);
      assert.deepEqual((await store.getTask(t.id))!.cancel, { reason: 'user', requested_at: iso(60), detached: true });
    });

    it('requestCancel moves only a running task to cancelling, without an event', async () => {
      const run = await create();
      const queued = await create();
      await claim({ max: 1 });
      const before = await store.listEvents(run.id, 0);
      const t = await store.requestCancel(run.id, 'disconnect', iso(80));
      assert.ok(t);
      assert.equal(t.status, 'cancelling');
      assert.deepEqual(t.cancel, { reason: 'disconnect', requested_at: iso(80) });
      assert.equal(t.ended_at, null);
      assert.deepEqual(await store.listEvents(run.id, 0), before);

      assert.equal(await store.requestCancel(run.id, 'user', iso(81)), null, 'already cancelling');
      assert.deepEqual((await store.getTask(run.id))!.cancel, { reason: 'disconnect', requested_at: iso(80) });
      assert.equal(await store.requestCancel(queued.id, 'user', iso(81)), null);
      assert.equal((await store.getTask(queued.id))!.status, 'queued');
      assert.equal(await store.requestCancel('task_missing', 'user', iso(81)), null);
    });

    it('findActiveTaskIds: only the owner’s non-terminal tasks matching the filter', async () => {
      await store.createThread({ id: 'thr_f', owner: 'alice', created_at: iso(0), metadata: {} });
      const r1 = await create({ type: 'y' });
      const done = await create({ type: 'x' });
      await claim({ max: 2 });
      await complete(done.id, 3, 1);
      const q1 = await create({ type: 'x' });
      const q2 = await create({ type: 'y', thread_id: 'thr_f' });
      await create({ owner: 'bob', type: 'x' });

      const sorted = async (f: Parameters<Store['findActiveTaskIds']>[0]) => (await store.findActiveTaskIds(f)).sort();
      assert.deepEqual(await sorted({ owner: 'alice' }), [r1.id, q1.id, q2.id].sort());
      assert.deepEqual(await sorted({ owner: 'alice', status: ['queued'] }), [q1.id, q2.id].sort());
      assert.deepEqual(await sorted({ owner: 'alice', status: ['completed', 'queued'] }), [q1.id, q2.id].sort());
      assert.deepEqual(await sorted({ owner: 'alice', status: ['completed'] }), []);
      assert.deepEqual(await sorted({ owner: 'alice', type: 'x' }), [q1.id]);
      assert.deepEqual(await sorted({ owner: 'alice', thread_id: 'thr_f' }), [q2.id]);
      assert.deepEqual(await sorted({ owner: 'alice', created_before: q1.created_at }), [r1.id]);
      assert.deepEqual(await sorted({ owner: 'carol' }), []);
    });

    // ── recovery ───────────────────────────────────────────────────────────

    it('recoverLost: rebuilds output_text from the stored deltas when the row lags them (OUTPUT_SAVE_MS)', async () => {
      const stopping = await create({ type: 'plain' });
      const resumable = await create({ type: 'resume' });
      assert.equal((await claim({ nodeId: 'n1', now: iso(100) })).length, 2);
      const delta = (task_id: string, seq: number, text: string, saved: string | null) => ({
        event: { task_id, seq, type: 'output.delta' as const, data: { text }, created_at: iso(101) },
        ...(saved !== null && { patch: { append_output: saved } }),
      });
      // The row got "Hel" with the first delta; "lo", " wo", "rld" only as events (and a
      // progress event between them, which is not text).
      await store.writeEvents([
        delta(stopping.id, 3, 'Hel', 'Hel'),
        delta(stopping.id, 4, 'lo', null),
        {
          event: {
            task_id: stopping.id,
            seq: 5,
            type: 'task.progress',
            data: { progress: null, message: 'x' },
            created_at: iso(101),
          },
          patch: { progress: null, progress_message: 'x' },
        },
        delta(stopping.id, 6, ' wo', null),
        delta(stopping.id, 7, 'rld', null),
        delta(resumable.id, 3, 'ab', null),
      ]);
      assert.equal((await store.getTask(stopping.id))!.output_text, 'Hel', 'the row lags, as the runtime leaves it');
      assert.ok(await store.requestCancel(stopping.id, 'user', iso(102)));
      const recovered = await store.recoverLost({ nodeId: 'n1', resumableTypes: ['resume'], now: iso(200) });
      const byId = new Map(recovered.map((t) => [t.id, t]));
      assert.equal(byId.get(stopping.id)!.output_text, 'Hello world');
      assert.equal((await store.getTask(stopping.id))!.output_text, 'Hello world');
      const [ended] = await store.listEvents(stopping.id, 7);
      assert.equal(ended!.type, 'task.cancelled');
      assert.equal((ended!.data as { output_text: string }).output_text, 'Hello world');
      // Requeued: a resumed run continues the text the events hold.
      assert.equal(byId.get(resumable.id)!.status, 'queued');
      assert.equal((await store.getTask(resumable.id))!.output_text, 'ab');
    });

    it('recoverLost: fails plain tasks, requeues resumable ones, ends cancelling ones cancelled', async () => {
      const plain = await create({ type: 'plain' });
      const resumable = await create({ type: 'resume' });
      const stopping = await create({ type: 'plain' });
      const claimed = await claim({ nodeId: 'n1', now: iso(100) });
      assert.equal(claimed.length, 3);
      const elsewhere = await create({ type: 'plain' });
      assert.equal((await claim({ nodeId: 'n2', now: iso(100) })).length, 1);

      await store.saveCheckpoint(resumable.id, { step: 2, notes: ['a'] });
      await store.writeEvents([
        {
          event: {
            task_id: stopping.id,
            seq: 3,
            type: 'output.delta',
            data: { text: 'partial' },
            created_at: iso(101),
          },
          patch: { append_output: 'partial' },
        },
      ]);
      assert.ok(await store.requestCancel(stopping.id, 'user', iso(102)));

      const recovered = await store.recoverLost({ nodeId: 'n1', resumableTypes: ['resume'], now: iso(200) });
      const byId = new Map(recovered.map((t) => [t.id, t]));
      assert.deepEqual([...byId.keys()].sort(), [plain.id, resumable.id, stopping.id].sort());

      const failed = byId.get(plain.id)!;
      assert.equal(failed.status, 'failed');
      // Written above every seq the lost node may have handed out, naming the last stored one.
      assert.deepEqual(failed.error, { code: 'node_lost', message: nodeLostMessage(2) });
      assert.equal(failed.ended_at, iso(200));
      assert.deepEqual(await store.listEvents(plain.id, 2), [
        {
          task_id: plain.id,
          seq: 2 + SEQ_AHEAD + 1,
          type: 'task.failed',
          data: { error: { code: 'node_lost', message: nodeLostMessage(2) }, last_durable_seq: 2 },
          created_at: iso(200),
        },
      ]);

      const requeued = byId.get(resumable.id)!;
      assert.equal(requeued.status, 'queued');
      assert.equal(requeued.ended_at, null);
      assert.deepEqual(types(await store.listEvents(resumable.id, 2)), [`${3 + SEQ_AHEAD}:task.queued`]);
      assert.deepEqual((await store.listEvents(resumable.id, 2))[0]!.data, { last_durable_seq: 2 });

      const cancelled = byId.get(stopping.id)!;
      assert.equal(cancelled.status, 'cancelled');
      assert.deepEqual(cancelled.cancel, { reason: 'user', requested_at: iso(102) });
      assert.equal(cancelled.output_text, 'partial');
      assert.equal(cancelled.ended_at, iso(200));
      assert.deepEqual(await store.listEvents(stopping.id, 3), [
        {
          task_id: stopping.id,
          seq: 4 + SEQ_AHEAD,
          type: 'task.cancelled',
          data: { reason: 'user', output_text: 'partial', last_durable_seq: 3 },
          created_at: iso(200),
        },
      ]);

      for (const t of recovered) assert.deepEqual(await store.getTask(t.id), t);
      assert.equal((await store.getTask(elsewhere.id))!.status, 'running', 'another node’s task is untouched');
      assert.deepEqual(await store.recoverLost({ nodeId: 'n1', resumableTypes: ['resume'], now: iso(201) }), []);

      // The requeued task resumes from its checkpoint with the next attempt.
      const again = await claim({ nodeId: 'n3', now: iso(300) });
      assert.equal(again.length, 1);
      assert.equal(again[0]!.task.id, resumable.id);
      assert.deepEqual(again[0]!.checkpoint, { step: 2, notes: ['a'] });
      assert.equal(again[0]!.lastSeq, 4 + SEQ_AHEAD);
      assert.deepEqual((await store.listEvents(resumable.id, 3 + SEQ_AHEAD))[0]!.data, { attempt: 2 });
    });

    it('recoverLost by expired lease respects renewLeases', async () => {
      const t = await create();
      await claim({ nodeId: 'n2', now: iso(100), leaseMs: 30_000 }); // lease until iso(130)
      assert.deepEqual(await store.recoverLost({ expiredBefore: iso(129), resumableTypes: [], now: iso(129) }), []);
      await store.renewLeases('n2', 30_000, iso(125), [t.id]); // lease until iso(155)
      assert.deepEqual(await store.recoverLost({ expiredBefore: iso(140), resumableTypes: [], now: iso(140) }), []);
      await store.renewLeases('other-node', 1_000_000, iso(141));
      const lost = await store.recoverLost({ expiredBefore: iso(156), resumableTypes: [], now: iso(156) });
      assert.deepEqual(
        lost.map((x) => [x.id, x.status]),
        [[t.id, 'failed']],
      );
      await assert.rejects(store.recoverLost({ resumableTypes: [], now: iso(157) }), 'needs a node or a cut-off');
    });

    it('renewLeases renews only what the node holds: a task it does not know it runs lapses and is recovered', async () => {
      const known = await create();
      const orphan = await create();
      await claim({ nodeId: 'n1', max: 2, now: iso(100), leaseMs: 10_000 }); // both until iso(110)
      // n1 never got the claim's answer for `orphan` (say the connection died after the commit).
      assert.deepEqual(await store.renewLeases('n1', 10_000, iso(105), [known.id]), { cancelling: [], lost: [] });
      const recovered = await store.recoverLost({ expiredBefore: iso(112), resumableTypes: [], now: iso(112) });
      assert.deepEqual(
        recovered.map((t) => [t.id, t.status]),
        [[orphan.id, 'failed']],
      );
      assert.equal((await store.getTask(known.id))!.status, 'running');
    });

    it('renewLeases reports stop requests for the node and the held tasks it no longer holds', async () => {
      const a = await create();
      const b = await create();
      const c = await create({ type: 'resume' });
      const other = await create();
      await claim({ nodeId: 'n1', max: 3, now: iso(100), leaseMs: 10_000 });
      await claim({ nodeId: 'n2', now: iso(100), leaseMs: 100_000 });

      let r = await store.renewLeases('n1', 10_000, iso(105), [a.id, b.id, c.id]);
      assert.deepEqual(r, { cancelling: [], lost: [] });

      // A stop asked on another node: the store says cancelling; the renewal tells n1.
      assert.ok(await store.requestCancel(b.id, 'user', iso(106)));
      r = await store.renewLeases('n1', 10_000, iso(107), [a.id, b.id, c.id]);
      assert.deepEqual(r, { cancelling: [{ id: b.id, reason: 'user' }], lost: [] });

      // n1 stops renewing; its leases run out and another node recovers them.
      const recovered = await store.recoverLost({ expiredBefore: iso(118), resumableTypes: ['resume'], now: iso(118) });
      assert.deepEqual(recovered.map((t) => t.id).sort(), [a.id, b.id, c.id].sort());
      assert.equal((await store.getTask(other.id))!.status, 'running', 'n2’s longer lease has not run out');
      // c was requeued and is now run by n3: n1 must not think it still holds it either.
      assert.deepEqual(
        (await claim({ nodeId: 'n3', now: iso(119) })).map((x) => x.task.id),
        [c.id],
      );
      r = await store.renewLeases('n1', 10_000, iso(120), [a.id, b.id, c.id]);
      assert.deepEqual(r.cancelling, []);
      assert.deepEqual([...r.lost].sort(), [a.id, b.id, c.id].sort());
      assert.deepEqual(await store.renewLeases('n1', 10_000, iso(121)), { cancelling: [], lost: [] });
      // The recovered tasks' log has moved past a gap (no seq collides): n1's late events
      // are still refused, by the fence, as a conflict naming the task.
      await assert.rejects(
        store.writeEvents([
          {
            event: { task_id: a.id, seq: 3, type: 'output.delta', data: { text: 'late' }, created_at: iso(122) },
            patch: { append_output: 'late' },
          },
        ]),
        (e: unknown) =>
          (e as { code?: string }).code === 'event_conflict' &&
          (e as { details?: { task_id?: string } }).details?.task_id === a.id,
      );
      assert.equal((await store.getTask(a.id))!.output_text, '');
      assert.ok(!(await store.listEvents(a.id, 0)).some((e) => e.seq === 3), 'nothing of the fenced batch is stored');
      // The same inside a batch with another task's good events (the many-task statement):
      // the whole batch is refused, naming the fenced task, and nothing of it is stored.
      const next = (await store.listEvents(other.id, 0)).at(-1)!.seq + 1;
      await assert.rejects(
        store.writeEvents([
          {
            event: { task_id: other.id, seq: next, type: 'output.delta', data: { text: 'ok' }, created_at: iso(122) },
            patch: { append_output: 'ok' },
          },
          {
            event: { task_id: a.id, seq: 3, type: 'output.delta', data: { text: 'late' }, created_at: iso(122) },
            patch: { append_output: 'late' },
          },
        ]),
        (e: unknown) =>
          (e as { code?: string }).code === 'event_conflict' &&
          (e as { details?: { task_id?: string } }).details?.task_id === a.id,
      );
      assert.equal((await store.listEvents(other.id, next - 1)).length, 0, "the other task's events are not stored");
      assert.equal((await store.getTask(other.id))!.output_text, '');
    });

    // ── remote-worker types ────────────────────────────────────────────────

    it('remote types are stored per owner; a declaration without a schema keeps the stored one', async () => {
      assert.deepEqual(await store.listRemoteTypes(), []);
      await store.saveRemoteType('ann', 'r.t', '{"a":1}', iso(1));
      await store.saveRemoteType('bob', 'r.t', '{"b":2}', iso(2));
      await store.saveRemoteType('ann', 'r.t', null, iso(3));
      await store.saveRemoteType('bob', 'a.t', null, iso(4));
      assert.deepEqual(await store.listRemoteTypes(), [
        { owner: 'bob', type: 'a.t', schema: null },
        { owner: 'ann', type: 'r.t', schema: '{"a":1}' },
        { owner: 'bob', type: 'r.t', schema: '{"b":2}' },
      ]);
      await store.saveRemoteType('ann', 'r.t', '{"a":3}', iso(5));
      assert.deepEqual(
        (await store.listRemoteTypes()).find((r) => r.owner === 'ann'),
        { owner: 'ann', type: 'r.t', schema: '{"a":3}' },
        'a new schema replaces the owner’s own only',
      );
    });

    // ── retention, deletion, cache, counts ─────────────────────────────────

    it('purgeEnded removes old ended tasks with their events and keeps active ones', async () => {
      const old = await create();
      const recent = await create();
      const running = await create();
      await claim({ max: 3 });
      await complete(old.id, 3, 'a', iso(10));
      await complete(recent.id, 3, 'b', iso(30));
      const queued = await create();
      const oldCancelled = await create();
      await store.cancelQueued(oldCancelled.id, 'user', iso(5));

      assert.equal(await store.purgeEnded(iso(20)), 2);
      assert.equal(await store.getTask(old.id), null);
      assert.equal(await store.getTask(oldCancelled.id), null);
      assert.deepEqual(await store.listEvents(old.id, 0), []);
      assert.deepEqual(await store.listEvents(oldCancelled.id, 0), []);
      assert.equal((await store.getTask(recent.id))!.status, 'completed');
      assert.equal((await store.listEvents(recent.id, 0)).length, 3);
      assert.equal((await store.getTask(running.id))!.status, 'running');
      assert.equal((await store.getTask(queued.id))!.status, 'queued');
      assert.equal(await store.purgeEnded(iso(20)), 0);
    });

    it('deleteTask refuses active tasks and other owners', async () => {
      const q = await create();
      const r = await create();
      await claim({ max: 1 });
      assert.equal((await store.getTask(q.id))!.status, 'running');
      assert.equal(await store.deleteTask(q.id, 'alice'), 'active');
      assert.equal(await store.deleteTask(r.id, 'alice'), 'active');
      await complete(q.id, 3, 'x');
      assert.equal(await store.deleteTask(q.id, 'bob'), 0);
      assert.equal(await store.deleteTask('task_missing', 'alice'), 0);
      assert.equal(await store.deleteTask(q.id, 'alice'), 1);
      assert.equal(await store.getTask(q.id), null);
      assert.deepEqual(await store.listEvents(q.id, 0), []);
      assert.equal(await store.deleteTask(q.id, 'alice'), 0);
      assert.equal((await store.getTask(r.id))!.status, 'queued');
    });

    it('findCachedResult: newest completed task of the same owner, type and input hash since a time', async () => {
      const a = await create({ type: 'sum', input_hash: 'h1' });
      const b = await create({ type: 'sum', input_hash: 'h1' });
      const f = await create({ type: 'sum', input_hash: 'h1' });
      await create({ type: 'sum', input_hash: 'h1' }); // stays queued
      await claim({ max: 3 });
      await complete(a.id, 3, { v: 1 });
      await complete(b.id, 3, { v: 2 });
      const error = { code: 'x', message: 'y' };
      await store.writeEvents([
        {
          event: { task_id: f.id, seq: 3, type: 'task.failed', data: { error }, created_at: iso(9) },
          patch: { status: 'failed', error, ended_at: iso(9) },
        },
      ]);

      const hit = await store.findCachedResult('alice', 'sum', 'h1', iso(0));
      assert.equal(hit?.id, b.id);
      assert.deepEqual(hit?.result, { v: 2 });
      assert.equal((await store.findCachedResult('alice', 'sum', 'h1', b.created_at))?.id, b.id, 'since is inclusive');
      assert.equal(await store.findCachedResult('alice', 'sum', 'h1', iso(clock + 1)), null);
      assert.equal(await store.findCachedResult('bob', 'sum', 'h1', iso(0)), null);
      assert.equal(await store.findCachedResult('alice', 'other', 'h1', iso(0)), null);
      assert.equal(await store.findCachedResult('alice', 'sum', 'h2', iso(0)), null);
    });

    it('countByStatus reports every status', async () => {
      const zero = Object.fromEntries(
        (['queued', 'running', 'cancelling', 'completed', 'failed', 'cancelled'] as TaskStatus[]).map((s) => [s, 0]),
      );
      assert.deepEqual(await store.countByStatus(), zero);
      const a = await create();
      const b = await create();
      const c = await create();
      await create();
      const x = await create();
      await claim({ max: 3 });
      await complete(a.id, 3, 1);
      await store.requestCancel(b.id, 'user', iso(5));
      await store.cancelQueued(x.id, 'user', iso(5));
      await store.createTask(nextTask({ owner: 'bob' }), ROOMY);
      assert.equal((await store.getTask(c.id))!.status, 'running');
      assert.deepEqual(await store.countByStatus(), {
        queued: 2,
        running: 1,
        cancelling: 1,
        completed: 1,
        failed: 0,
        cancelled: 1,
      });
    });

    // ── threads and messages ───────────────────────────────────────────────

    it('threads: create, get with owner isolation, derived busy/idle status', async () => {
      const th = await store.createThread({
        id: 'thr_s',
        owner: 'alice',
        created_at: iso(1),
        metadata: { title: 'Q&A', n: 1 },
      });
      assert.deepEqual(th, {
        id: 'thr_s',
        owner: 'alice',
        status: 'idle',
        created_at: iso(1),
        metadata: { title: 'Q&A', n: 1 },
      });
      assert.deepEqual(await store.getThread('thr_s'), th);
      assert.deepEqual(await store.getThread('thr_s', 'alice'), th);
      assert.equal(await store.getThread('thr_s', 'bob'), null);
      assert.equal(await store.getThread('thr_missing'), null);

      const t = await create({ thread_id: 'thr_s' });
      assert.equal((await store.getThread('thr_s'))!.status, 'busy');
      await claim();
      assert.equal((await store.getThread('thr_s'))!.status, 'busy');
      await store.requestCancel(t.id, 'user', iso(5));
      assert.equal((await store.getThread('thr_s'))!.status, 'busy');
      await store.writeEvents([
        {
          event: {
            task_id: t.id,
            seq: 3,
            type: 'task.cancelled',
            data: { reason: 'user', output_text: '' },
            created_at: iso(6),
          },
          patch: { status: 'cancelled', ended_at: iso(6) },
        },
      ]);
      assert.equal((await store.getThread('thr_s'))!.status, 'idle');
      assert.equal((await store.listThreads('alice', 10)).data[0]!.status, 'idle');
    });

    it('listThreads pages newest first and only the owner’s', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push(`thr_${i}`);
        await store.createThread({ id: `thr_${i}`, owner: 'alice', created_at: iso(i), metadata: {} });
      }
      await store.createThread({ id: 'thr_bob', owner: 'bob', created_at: iso(9), metadata: {} });
      await create({ thread_id: 'thr_3' });

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.listThreads('alice', 2, cursor);
        seen.push(...page.data.map((t) => t.id));
        cursor = page.next_cursor ?? undefined;
        assert.ok(++pages <= 3);
      } while (cursor);
      assert.equal(pages, 3);
      assert.deepEqual(seen, [...ids].reverse());
      const first = await store.listThreads('alice', 5);
      assert.equal(first.next_cursor, null);
      assert.deepEqual(
        first.data.map((t) => t.status),
        ['idle', 'busy', 'idle', 'idle', 'idle'],
      );
      assert.deepEqual(
        (await store.listThreads('bob', 10)).data.map((t) => t.id),
        ['thr_bob'],
      );
      await assert.rejects(store.listThreads('alice', 2, 'bogus'));
    });

    it('messages: per-thread seq, duplicates kept, append/update, turn deletion', async () => {
      await store.createThread({ id: 'thr_m', owner: 'alice', created_at: iso(0), metadata: {} });
      await store.createThread({ id: 'thr_o', owner: 'alice', created_at: iso(0), metadata: {} });
      const msg = (
        id: string,
        role: 'system' | 'user' | 'assistant',
        content: string,
        task_id: string | null,
        thread_id = 'thr_m',
      ) => store.appendMessage({ id, thread_id, role, content, status: 'complete', task_id, created_at: iso(++clock) });

      const m1 = await msg('msg_1', 'system', 'be brief', null);
      assert.deepEqual(m1, {
        id: 'msg_1',
        thread_id: 'thr_m',
        seq: 1,
        role: 'system',
        content: 'be brief',
        status: 'complete',
        task_id: null,
        created_at: m1.created_at,
        usage: null,
      });
      const o1 = await msg('msg_o1', 'user', 'elsewhere', null, 'thr_o');
      assert.equal(o1.seq, 1, 'seq is per thread');
      const u1 = await msg('msg_2', 'user', 'hello', 'task_1');
      const a1 = await store.appendMessage({
        id: 'msg_3',
        thread_id: 'thr_m',
        role: 'assistant',
        content: '',
        status: 'streaming',
        task_id: 'task_1',
        created_at: iso(++clock),
      });
      const u2 = await msg('msg_4', 'user', 'hello', 'task_2');
      const a2 = await msg('msg_5', 'assistant', 'second answer', 'task_2');
      assert.deepEqual([u1.seq, a1.seq, u2.seq, a2.seq], [2, 3, 4, 5]);

      await store.updateMessage('msg_3', { append: 'Hi' });
      await store.updateMessage('msg_3', { append: ' there' });
      await store.updateMessage('msg_3', { status: 'cancelled', usage: { input_tokens: 12, output_tokens: 3 } });
      await store.updateMessage('msg_5', { content: 'replaced' });
      await store.updateMessage('msg_gone', { append: 'x' }); // a deleted turn still streaming: no error

      let list = await store.listMessages('thr_m');
      assert.deepEqual(
        list.map((m) => [m.seq, m.role, m.content, m.status]),
        [
          [1, 'system', 'be brief', 'complete'],
          [2, 'user', 'hello', 'complete'],
          [3, 'assistant', 'Hi there', 'cancelled'],
          [4, 'user', 'hello', 'complete'],
          [5, 'assistant', 'replaced', 'complete'],
        ],
      );
      assert.deepEqual(list[2]!.usage, { input_tokens: 12, output_tokens: 3 });
      // A page of a long thread: the last `limit` before a seq, still in conversation order.
      const seqs = async (limit: number, before?: number): Promise<number[]> =>
        (await store.listRecentMessages('thr_m', limit, before)).map((m) => m.seq);
      assert.deepEqual(await seqs(2), [4, 5]);
      assert.deepEqual(await seqs(2, 4), [2, 3]);
      assert.deepEqual(await seqs(10, 2), [1]);
      assert.deepEqual(await seqs(10, 1), []);
      assert.deepEqual(await seqs(100), [1, 2, 3, 4, 5]);
      assert.equal(await store.countMessagesBefore('thr_m', 4), 3);
      assert.equal(await store.countMessagesBefore('thr_m', 1), 0);
      assert.equal(await store.countMessagesBefore('thr_m', Number.MAX_SAFE_INTEGER), 5);
      assert.deepEqual(
        (await store.listRecentMessages('thr_o', 100)).map((m) => m.id),
        ['msg_o1'],
        'only within the given thread',
      );

      assert.equal(await store.deleteMessagesOfTask('thr_m', 'task_1'), 2);
      assert.equal(await store.deleteMessagesOfTask('thr_o', 'task_2'), 0, 'only within the given thread');
      list = await store.listMessages('thr_m');
      assert.deepEqual(
        list.map((m) => m.id),
        ['msg_1', 'msg_4', 'msg_5'],
      );
      const next = await msg('msg_6', 'user', 'again', null);
      assert.ok(next.seq > 5, 'new messages sort after the existing ones');
      assert.deepEqual(
        (await store.listMessages('thr_o')).map((m) => m.id),
        ['msg_o1'],
      );
      await assert.rejects(msg('msg_x', 'user', 'nowhere', null, 'thr_missing'));
    });

    it('deleteThread: owner only, removes its messages', async () => {
      await store.createThread({ id: 'thr_d', owner: 'alice', created_at: iso(0), metadata: {} });
      await store.appendMessage({
        id: 'msg_d',
        thread_id: 'thr_d',
        role: 'user',
        content: 'x',
        status: 'complete',
        task_id: null,
        created_at: iso(1),
      });
      assert.equal(await store.deleteThread('thr_d', 'bob'), false);
      assert.ok(await store.getThread('thr_d'));
      assert.equal(await store.deleteThread('thr_d', 'alice'), true);
      assert.equal(await store.getThread('thr_d'), null);
      assert.deepEqual(await store.listMessages('thr_d'), []);
      assert.equal(await store.deleteThread('thr_d', 'alice'), false);
    });

    // ── notifier ───────────────────────────────────────────────────────────

    it('notifier delivers asynchronously per channel; unsubscribe stops delivery; a throwing listener harms no one', async () => {
      const got: Record<string, string[]> = { a: [], b: [], c: [] };
      const n = store.notifier;
      const offThrow = n.subscribe('wakeup', () => {
        throw new Error('listener bug (expected in this test)');
      });
      const offA = n.subscribe('wakeup', (p) => got.a!.push(p));
      const offB = n.subscribe('wakeup', (p) => got.b!.push(p));
      const offC = n.subscribe('cancel', (p) => got.c!.push(p));

      const pending = n.publish('wakeup', 'one');
      assert.deepEqual(got.a, [], 'not delivered synchronously inside publish');
      await pending;
      await waitFor(() => got.a!.length === 1 && got.b!.length === 1, 'first delivery');
      assert.deepEqual(got.a, ['one']);

      offA();
      offA(); // idempotent: must not remove anything else
      await n.publish('wakeup', 'two');
      await n.publish('cancel', 'task_9');
      await waitFor(() => got.b!.length === 2 && got.c!.length === 1, 'second delivery');
      assert.deepEqual(got.a, ['one']);
      assert.deepEqual(got.b, ['one', 'two']);
      assert.deepEqual(got.c, ['task_9']);

      await n.publish('events', 'task_9:3');
      await n.publish('cancel', 'task_10');
      await waitFor(() => got.c!.length === 2, 'third delivery');
      assert.deepEqual(got.b, ['one', 'two'], 'other channels are not delivered to wakeup listeners');
      offB();
      offC();
      offThrow();
    });
  });
}
