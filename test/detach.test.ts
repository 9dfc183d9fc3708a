// Nothing stays `cancelling`: an inline handler that ignores its signal is detached
// after its grace (its task ends `cancelled` with cancel.detached, its slot is reused,
// whatever it does later is dropped, one warning names its type, a counter counts it);
// the same type run with `isolation: 'process'` is killed instead.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { runtimeLimitsFromEnv, UsageError } from '../src/cli/serve.ts';
import { defineTask } from '../src/runtime/define-task.ts';
import type { TypeOverride } from '../src/runtime/runtime.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import { builtinTasks } from '../src/tasks/index.ts';
import { deaf, quick } from './fixtures/hard-tasks.ts';
import { startFakeUpstream, type FakeUpstream } from './helpers/fake-upstream.ts';
import { startRuntime } from './helpers/runtime.ts';
import { api, eventually, readSse, startOnTempDb } from './helpers/server.ts';

const GRACE = 300; // deaf's graceMs

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

describe('detaching an inline handler that ignores its signal', () => {
  let url: string;
  let close: () => Promise<void>;
  const logs: LogLine[] = [];

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
        cb();
      },
    });
    const started = await startOnTempDb('leash-detach-', pino({ level: 'info' }, sink), {
      tasks: [...builtinTasks, deaf, quick],
      runtime: { maxRunningPerOwner: 1 },
    });
    url = started.server.url;
    close = started.close;
  });
  after(async () => {
    await close?.();
  });

  const create = async (body: unknown): Promise<{ id: string; status: string }> => {
    const r = await api(url, 'POST', '/api/tasks', { body });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body;
  };
  const get = async (id: string) => (await api(url, 'GET', `/api/tasks/${id}`)).body;
  const events = async (id: string) =>
    readSse(await fetch(`${url}/api/tasks/${id}/events`, { headers: { accept: 'text/event-stream' } }));
  const pidOf = async (id: string): Promise<number> => {
    const text = await eventually(async () => /^pid \d+/.exec((await get(id)).output_text)?.[0]);
    return Number(text.slice(4));
  };

  it('ends cancelled + detached within its grace, frees its slot, and drops what the handler does later', async () => {
    const t0 = Date.now();
    const a = await create({ type: 'deaf', input: { sleepMs: 1500 } });
    await pidOf(a.id);
    const queued = await create({ type: 'quick', input: {} });
    assert.equal(queued.status, 'queued', 'the owner’s one slot is taken');

    const c = await api(url, 'POST', `/api/tasks/${a.id}/cancel`);
    assert.equal(c.status, 202);
    assert.equal(c.body.status, 'cancelling');
    const done = (await api(url, 'GET', `/api/tasks/${a.id}/wait?timeout_s=10`)).body;
    assert.equal(done.status, 'cancelled');
    assert.equal(done.cancel.reason, 'user');
    assert.equal(done.cancel.detached, true);
    assert.ok(Date.now() - t0 < 1500, 'ended before the handler’s own sleep did');

    const log = await events(a.id);
    assert.deepEqual(
      log.map((f) => f.event),
      ['task.queued', 'task.started', 'output.delta', 'task.cancelling', 'task.cancelled'],
    );
    const cancelling = log.find((f) => f.event === 'task.cancelling')!;
    const cancelled = log.at(-1)!;
    assert.equal(cancelled.data.detached, true);
    assert.equal(cancelled.data.reason, 'user');
    // Judged by the server's own event times, not by this test's wall clock.
    const storedTask = await get(a.id);
    const stoppedAfter = Date.parse(storedTask.ended_at) - Date.parse(storedTask.cancel.requested_at);
    assert.ok(stoppedAfter >= GRACE - 5, `detached after ${stoppedAfter} ms, before its grace of ${GRACE}`);
    assert.ok(stoppedAfter <= GRACE + 100, `detached ${stoppedAfter} ms after the cancel (grace ${GRACE} + 100)`);
    assert.ok(cancelling.id! < cancelled.id!);

    // The slot went to the queued task while the detached handler still sleeps.
    const q = (await api(url, 'GET', `/api/tasks/${queued.id}/wait?timeout_s=10`)).body;
    assert.equal(q.status, 'completed');
    assert.ok(Date.now() - t0 < 1500, 'the slot was reused before the handler returned');

    // The handler wakes at 1.5 s, emits, reports and returns: all of it is dropped.
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + 1500 + 300 - Date.now())));
    const after = await get(a.id);
    assert.equal(after.status, 'cancelled');
    assert.equal(after.output_text.includes('LATE'), false);
    assert.equal(after.result, null);
    assert.deepEqual(
      (await events(a.id)).map((f) => f.event),
      log.map((f) => f.event),
      'nothing appended after the end',
    );

    // One warning naming the type; one cancel line saying it was detached; the counter.
    const warnings = logs.filter((l) => l.level === 40 && l.task_id === a.id);
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0]!.msg, /"deaf"/);
    assert.equal(warnings[0]!.type, 'deaf');
    const lines = await eventually(async () => {
      const found = logs.filter((l) => l.msg === 'task cancelled' && l.task_id === a.id);
      return found.length > 0 && found;
    });
    assert.equal(lines.length, 1, 'one log line per cancel');
    assert.equal(lines[0]!.detached, true);
    assert.equal(lines[0]!.reason, 'user');
    assert.equal(lines[0]!.type, 'deaf');
    assert.equal(lines[0]!.stage, 'running');
    assert.equal(lines[0]!.deltas, 1);
    assert.ok(typeof lines[0]!.stopped_ms === 'number' && (lines[0]!.stopped_ms as number) >= GRACE - 5);
    const metrics: string = (await api(url, 'GET', '/metrics')).body;
    assert.match(metrics, /^leash_tasks_detached_total\{type="deaf"\} 1$/m);
    assert.match(
      metrics,
      /^leash_cancel_latency_seconds_count\{isolation="inline",outcome="detached",reason="user"\} 1$/m,
    );
  });

  it('a handler sleeping 10 s ignoring its signal is ended long before, with a per-task grace', async () => {
    const a = await create({ type: 'deaf', input: {}, grace_ms: 100 }); // sleeps 10 s
    await pidOf(a.id);
    const t0 = Date.now();
    await api(url, 'POST', `/api/tasks/${a.id}/cancel`);
    const done = (await api(url, 'GET', `/api/tasks/${a.id}/wait?timeout_s=10`)).body;
    assert.equal(done.status, 'cancelled');
    assert.equal(done.cancel.detached, true);
    assert.ok(Date.now() - t0 < 5000, 'not left cancelling until the handler returns');
    const stoppedAfter = Date.parse(done.ended_at) - Date.parse(done.cancel.requested_at);
    assert.ok(stoppedAfter <= 100 + 100, `detached ${stoppedAfter} ms after the cancel (grace 100 + 100)`);
  });

  it('the same type run with isolation "process" is killed: its process is gone', async () => {
    const a = await create({ type: 'deaf', input: {}, isolation: 'process' });
    const pid = await pidOf(a.id);
    assert.notEqual(pid, process.pid, 'it ran in a child process');
    process.kill(pid, 0); // alive now
    await api(url, 'POST', `/api/tasks/${a.id}/cancel`);
    const done = (await api(url, 'GET', `/api/tasks/${a.id}/wait?timeout_s=10`)).body;
    assert.equal(done.status, 'cancelled');
    assert.equal(done.cancel.detached, undefined, 'killed, not detached');
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'its process is gone');
    // Written once the end is stored, which may be just after the wait above answered.
    const lines = await eventually(async () => {
      const found = logs.filter((l) => l.msg === 'task cancelled' && l.task_id === a.id);
      return found.length > 0 && found;
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(logs.filter((l) => l.msg === 'task cancelled' && l.task_id === a.id).length, 1);
    assert.equal(lines[0]!.forced, true);
    assert.equal(lines[0]!.detached, false);
  });

  it('built-in types accept isolation like any other', async () => {
    const r = await api(url, 'POST', '/api/tasks', {
      body: {
        type: 'generate',
        input: { prompt: 'hi', model: 'simulated?tps=0&tokens=5' },
        isolation: 'worker',
      },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const done = (await api(url, 'GET', `/api/tasks/${r.body.id}/wait?timeout_s=20`)).body;
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.ok(done.output_text.length > 0);
  });
});

describe('the operator decides how a type runs (LEASH_ISOLATION, LEASH_GRACE_MS)', () => {
  it('parses type=value pairs and refuses bad ones', () => {
    assert.deepEqual(
      runtimeLimitsFromEnv({ LEASH_ISOLATION: 'chat=process, analyze=worker', LEASH_GRACE_MS: '*=3000,chat=500' })
        .typeOverrides,
      { chat: { isolation: 'process', graceMs: 500 }, analyze: { isolation: 'worker' }, '*': { graceMs: 3000 } },
    );
    for (const env of [
      { LEASH_ISOLATION: 'chat=thread' },
      { LEASH_ISOLATION: 'chat' },
      { LEASH_GRACE_MS: 'chat=-1' },
      { LEASH_GRACE_MS: 'Chat=5' },
    ]) {
      assert.throws(() => runtimeLimitsFromEnv(env), UsageError, JSON.stringify(env));
    }
  });

  it('an unknown type, or isolation for a type without a module, stops the start with a usage error', async () => {
    const cases: Array<Record<string, TypeOverride>> = [
      { nope: { isolation: 'worker' } },
      { plain: { isolation: 'process' } },
    ];
    for (const typeOverrides of cases) {
      await assert.rejects(
        startOnTempDb('leash-override-', pino({ level: 'silent' }), {
          tasks: [...builtinTasks, defineTask({ type: 'plain', input: z.object({}), run: async () => 1 })],
          runtime: { typeOverrides },
        }),
        UsageError,
      );
    }
  });

  it('the built-in chat in a child process: a turn is answered and saved, a stopped one kept as cancelled', async () => {
    const started = await startOnTempDb('leash-chat-process-', pino({ level: 'silent' }), {
      runtime: { typeOverrides: { chat: { isolation: 'process', graceMs: 500 } } },
    });
    const url = started.server.url;
    try {
      const thread = (await api(url, 'POST', '/api/threads', { body: {} })).body.id;
      const first = (
        await api(url, 'POST', `/api/threads/${thread}/runs`, {
          body: { content: 'hello', model: 'simulated?tps=0&tokens=5' },
        })
      ).body;
      const done = (await api(url, 'GET', `/api/tasks/${first.id}/wait?timeout_s=20`)).body;
      assert.equal(done.status, 'completed', JSON.stringify(done));
      const second = (
        await api(url, 'POST', `/api/threads/${thread}/runs`, {
          body: { content: 'and more', model: 'simulated?tps=20&tokens=1000' },
        })
      ).body;
      await eventually(async () => (await api(url, 'GET', `/api/tasks/${second.id}`)).body.output_text);
      await api(url, 'POST', `/api/tasks/${second.id}/cancel`);
      const stopped = (await api(url, 'GET', `/api/tasks/${second.id}/wait?timeout_s=20`)).body;
      assert.equal(stopped.status, 'cancelled');
      const msgs = (await api(url, 'GET', `/api/threads/${thread}/messages`)).body.data;
      assert.deepEqual(
        msgs.map((m: { role: string; status: string }) => [m.role, m.status]),
        [
          ['user', 'complete'],
          ['assistant', 'complete'],
          ['user', 'complete'],
          ['assistant', 'cancelled'],
        ],
      );
      assert.equal(msgs[1].content, done.result.text, 'the isolated turn saved its answer through the parent');
      assert.equal(msgs[3].content, stopped.output_text);
      assert.ok(started.server.runtime.isolation.pool('process').size >= 1, 'the turns ran in a child process');
    } finally {
      await started.close();
    }
  });
});

describe('one log line per cancel', () => {
  let url: string;
  let close: () => Promise<void>;
  let upstream: FakeUpstream;
  const logs: LogLine[] = [];

  before(async () => {
    upstream = await startFakeUpstream({
      behaviour: 'stream',
      intervalMs: 30,
      tokens: Array.from({ length: 300 }, (_, i) => ` t${i}`),
    });
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
        cb();
      },
    });
    const started = await startOnTempDb('leash-cancel-log-', pino({ level: 'info' }, sink), {
      models: createModelRegistry({
        defaultModel: 'simulated',
        allow: ['simulated*', 'openai:fake-model'],
        env: { OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: 'test-key' },
      }),
      runtime: { maxRunningPerOwner: 1 },
    });
    url = started.server.url;
    close = started.close;
  });
  after(async () => {
    await close?.();
    await upstream?.close();
  });

  const lineOf = (id: string) =>
    eventually(async () => {
      const found = logs.filter((l) => l.msg === 'task cancelled' && l.task_id === id);
      return found.length > 0 && found;
    });

  it('running: reason, stop time, tokens, and that the upstream call was closed; queued: stage queued', async () => {
    const t = (
      await api(url, 'POST', '/api/tasks', {
        body: { type: 'generate', input: { prompt: 'x', model: 'openai:fake-model' } },
      })
    ).body;
    await eventually(async () => (await api(url, 'GET', `/api/tasks/${t.id}`)).body.output_text.length > 6);
    const queued = (
      await api(url, 'POST', '/api/tasks', {
        body: { type: 'generate', input: { prompt: 'y', model: 'simulated' } },
      })
    ).body;
    assert.equal(queued.status, 'queued');
    await api(url, 'POST', `/api/tasks/${queued.id}/cancel`, { body: { reason: 'batch' } });
    await api(url, 'POST', `/api/tasks/${t.id}/cancel`);
    const done = (await api(url, 'GET', `/api/tasks/${t.id}/wait?timeout_s=10`)).body;
    const [line, ...more] = await lineOf(t.id);
    assert.equal(more.length, 0);
    assert.equal(line!.level, 30);
    assert.equal(line!.type, 'generate');
    assert.equal(line!.reason, 'user');
    assert.equal(line!.stage, 'running');
    assert.equal(line!.upstream_closed, true);
    assert.equal(line!.detached, false);
    assert.equal(line!.output_chars, done.output_text.length);
    assert.ok((line!.deltas as number) >= 1);
    assert.ok(typeof line!.stopped_ms === 'number' && typeof line!.cleanup_ms === 'number');

    const [q] = await lineOf(queued.id);
    assert.equal(q!.stage, 'queued');
    assert.equal(q!.reason, 'batch');
    assert.equal(q!.deltas, 0);

    // A model with no upstream: said so.
    const sim = (
      await api(url, 'POST', '/api/tasks', {
        body: { type: 'generate', input: { prompt: 'z', model: 'simulated?tps=20&tokens=1000' } },
      })
    ).body;
    await eventually(async () => (await api(url, 'GET', `/api/tasks/${sim.id}`)).body.output_text.length > 0);
    await api(url, 'POST', `/api/tasks/${sim.id}/cancel`);
    const [s] = await lineOf(sim.id);
    assert.equal(s!.upstream_closed, false);

    const metrics: string = (await api(url, 'GET', '/metrics')).body;
    assert.match(metrics, /^leash_cancels_total\{reason="batch",stage="queued"\} 1$/m);
    assert.match(metrics, /^leash_cancels_total\{reason="user",stage="running"\} 2$/m);
    assert.match(metrics, /^leash_cancel_cleanup_seconds_count\{reason="user"\} 2$/m);
    assert.doesNotMatch(
      metrics,
      /leash_cancel_latency_seconds_count\{[^}]*reason="batch"/,
      'a queued cancel is no 0 s stop',
    );
  });
});

describe('shutdown with a handler that ignores its signal', () => {
  it('stop() detaches it after its grace: the task ends cancelled (shutdown, detached), nothing is left running', async () => {
    const t = await startRuntime([deaf]);
    try {
      const { task } = await t.runtime.create('local', { type: 'deaf', input: { sleepMs: 2000 } });
      await eventually(async () => (await t.runtime.get(task.id, 'local'))?.output_text);
      const t0 = Date.now();
      await t.runtime.stop({ graceMs: 0 });
      assert.ok(Date.now() - t0 < 1900, 'stop did not wait for the handler to return');
      const ended = await t.store.getTask(task.id);
      assert.equal(ended?.status, 'cancelled');
      assert.deepEqual(ended?.cancel && { reason: ended.cancel.reason, detached: ended.cancel.detached }, {
        reason: 'shutdown',
        detached: true,
      });
      assert.equal(t.runtime.activeCount, 0);
    } finally {
      await t.close();
    }
  });
});
