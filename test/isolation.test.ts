// Hard cancellation (issue 6): handlers that ignore their signal, block, crash or
// run out of memory, in worker threads and child processes. The task must stay
// `cancelling` until the work is really gone, then end `cancelled`, and the CPU
// must go quiet.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createModelRegistry } from '../src/models/registry.ts';
import { defineTask } from '../src/runtime/define-task.ts';
import { sleep } from '../src/core/cancel.ts';
import type { TaskEndInfo } from '../src/runtime/runtime.ts';
import type { Task } from '../src/core/types.ts';
import { allHardTasks } from './fixtures/hard-tasks.ts';
import { startRuntime, type TestRuntime } from './helpers/runtime.ts';

const OWNER = 'alice';
const GRACE = 200;

/** CPU ticks (utime + stime) of this process's child processes, from /proc. */
function childCpuTicks(): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === process.pid) ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks;
}

/** CPU used by this process (all threads, workers included) over `ms`, as a share of one core. */
async function ownCpuShare(ms: number): Promise<number> {
  const a = process.cpuUsage();
  await sleep(ms);
  const d = process.cpuUsage(a);
  return (d.user + d.system) / 1000 / ms;
}

describe('hard cancellation', () => {
  let t: TestRuntime;
  const ends = new Map<string, TaskEndInfo>();

  before(async () => {
    const plain = defineTask({ type: 'plain', input: z.object({}), run: async () => 1 }); // no module
    t = await startRuntime([...allHardTasks, plain], {
      models: createModelRegistry({ defaultModel: 'simulated', providers: {} }),
      maxRunningPerOwner: 8,
      observer: { taskEnded: (task, info) => ends.set(task.id, info) },
    });
  });
  after(async () => {
    await t.close();
  });

  const start = async (type: string, input: unknown = {}): Promise<Task> =>
    (await t.runtime.create(OWNER, { type, input })).task;
  const waitStatus = async (id: string, status: Task['status'], ms = 10_000): Promise<Task> => {
    const end = Date.now() + ms;
    for (;;) {
      const task = await t.runtime.get(id, OWNER);
      if (task?.status === status) return task;
      if (Date.now() > end) assert.fail(`${id} is ${task?.status}, never ${status}`);
      await sleep(5);
    }
  };
  const waitOutput = async (id: string) => {
    for (let i = 0; i < 1000; i++) {
      if ((await t.runtime.get(id, OWNER))?.output_text) return;
      await sleep(5);
    }
    assert.fail('no output');
  };

  for (const kind of ['worker', 'process'] as const) {
    it(`${kind}: a busy loop that never looks at its signal is killed after its grace`, async () => {
      const task = await start(`spin.${kind}`);
      await waitOutput(task.id);
      const t0 = performance.now();
      const r = await t.runtime.cancel(task.id, OWNER);
      assert.equal(r.task.status, 'cancelling');
      await sleep(GRACE / 2);
      assert.equal((await t.runtime.get(task.id, OWNER))?.status, 'cancelling', 'not terminal while the work runs');
      const done = await t.runtime.wait(task.id, OWNER, 10_000);
      const elapsed = performance.now() - t0;
      assert.equal(done?.status, 'cancelled');
      assert.equal(done?.output_text, 'before spin', 'output of the dying work is dropped');
      assert.ok(elapsed < GRACE + 1500, `stopped in ${elapsed.toFixed(0)} ms (grace ${GRACE})`);
      assert.deepEqual(
        { ...ends.get(task.id), cancelLatencyMs: 0, cleanupMs: 0 },
        {
          cancelLatencyMs: 0,
          cleanupMs: 0,
          isolation: kind,
          forced: true,
          detached: false,
          cancelReason: 'user',
          cancelStage: 'running',
        },
      );
      // The CPU goes quiet: the spinning thread / process is gone.
      if (kind === 'worker') assert.ok((await ownCpuShare(300)) < 0.5, 'this process is no longer spinning');
      else {
        const c0 = childCpuTicks();
        await sleep(300);
        assert.ok(childCpuTicks() - c0 <= 5, 'no child process is still burning CPU');
      }
    });

    it(`${kind}: a handler blocked synchronously is killed too`, async () => {
      const task = await start(`block.${kind}`);
      await waitOutput(task.id);
      await t.runtime.cancel(task.id, OWNER);
      const done = await t.runtime.wait(task.id, OWNER, 10_000);
      assert.equal(done?.status, 'cancelled');
      assert.equal(ends.get(task.id)?.forced, true);
    });

    it(`${kind}: a handler that honours its signal stops cooperatively and its slot is reused`, async () => {
      const task = await start(`coop.${kind}`);
      await waitStatus(task.id, 'running');
      await sleep(50);
      await t.runtime.cancel(task.id, OWNER);
      const done = await t.runtime.wait(task.id, OWNER, 10_000);
      assert.equal(done?.status, 'cancelled');
      assert.equal(ends.get(task.id)?.forced, false);
      const spawned = t.runtime.isolation.pool(kind).spawned;
      const a = await start(`noop.${kind}`);
      const b = await start(`noop.${kind}`);
      await t.runtime.wait(a.id, OWNER, 10_000);
      await t.runtime.wait(b.id, OWNER, 10_000);
      const ra = (await t.runtime.get(a.id, OWNER))?.result;
      assert.equal(typeof ra, 'number');
      assert.ok(t.runtime.isolation.pool(kind).spawned - spawned <= 1, 'warm slots are reused, not started per task');
    });

    it(`${kind}: model calls work inside the isolated handler`, async () => {
      const task = await start(`model.${kind}`, { tokens: 12 });
      const done = await t.runtime.wait(task.id, OWNER, 10_000);
      assert.equal(done?.status, 'completed');
      assert.equal((done?.result as { words: number }).words, 12);
      if (kind === 'process') assert.notEqual((done?.result as { pid: number }).pid, process.pid);
    });

    it(`${kind}: a crash fails the task handler_crashed and the server keeps serving`, async () => {
      const task = await start(`crash.${kind}`);
      const done = await t.runtime.wait(task.id, OWNER, 10_000);
      assert.equal(done?.status, 'failed');
      assert.equal(done?.error?.code, 'handler_crashed');
      const next = await start(`noop.${kind}`);
      assert.equal((await t.runtime.wait(next.id, OWNER, 10_000))?.status, 'completed');
    });

    it(`${kind}: exhausting its memory limit fails the task out_of_memory`, async () => {
      const task = await start(`oom.${kind}`);
      const done = await t.runtime.wait(task.id, OWNER, 30_000);
      assert.equal(done?.status, 'failed');
      assert.equal(done?.error?.code, 'out_of_memory', JSON.stringify(done?.error));
    });

    it(`${kind}: cancel while queued never starts the work`, async () => {
      const blockers = [];
      for (let i = 0; i < 8; i++) blockers.push(await start(`coop.${kind}`));
      const queued = await start(`spin.${kind}`);
      assert.equal((await t.runtime.get(queued.id, OWNER))?.status, 'queued');
      const r = await t.runtime.cancel(queued.id, OWNER);
      assert.equal(r.task.status, 'cancelled');
      for (const b of blockers) await t.runtime.cancel(b.id, OWNER);
      for (const b of blockers) await t.runtime.wait(b.id, OWNER, 10_000);
      const events = [];
      for await (const e of t.runtime.events(queued.id)) events.push(e.type);
      assert.deepEqual(events, ['task.queued', 'task.cancelled']);
    });
  }

  it("a task overrides its type's isolation and grace: an inline type run in a process is killed after its own grace", async () => {
    const { task } = await t.runtime.create(OWNER, {
      type: 'spin.inline',
      input: {},
      isolation: 'process',
      grace_ms: 100,
    });
    await waitOutput(task.id);
    const shown = (await t.runtime.get(task.id, OWNER))?.output_text;
    assert.notEqual(shown, `pid ${process.pid}`, 'it ran in another process');
    const t0 = performance.now();
    await t.runtime.cancel(task.id, OWNER);
    const done = await t.runtime.wait(task.id, OWNER, 10_000);
    assert.equal(done?.status, 'cancelled');
    assert.deepEqual(
      { ...ends.get(task.id), cancelLatencyMs: 0, cleanupMs: 0 },
      {
        cancelLatencyMs: 0,
        cleanupMs: 0,
        isolation: 'process',
        forced: true,
        detached: false,
        cancelReason: 'user',
        cancelStage: 'running',
      },
    );
    assert.ok(performance.now() - t0 < 100 + 1500);
  });

  it('isolation a type cannot honour, or a bad grace, is refused at create', async () => {
    await assert.rejects(t.runtime.create(OWNER, { type: 'plain', input: {}, isolation: 'worker' }), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'invalid_request');
      assert.deepEqual((e as { details?: unknown }).details, [
        {
          path: 'isolation',
          message: 'can\'t be worker for task type "plain": its definition names no module to load in isolation',
        },
      ]);
      return true;
    });
    assert.equal((await t.runtime.create(OWNER, { type: 'plain', input: {}, isolation: 'inline' })).created, true);
    await assert.rejects(
      t.runtime.create(OWNER, { type: 'spin.inline', input: {}, grace_ms: -1 }),
      (e: unknown) => (e as { code?: string }).code === 'invalid_request' && /grace_ms/.test((e as Error).message),
    );
  });
});
