// Upstream faults at the task level: `generate` tasks and thread runs whose model is
// `openai:` pointed at a fake OpenAI-compatible server that answers 500, resets the
// connection (before or during the answer), hangs, drips tokens slowly, or sends a
// stream that is not one. Each must end — `failed` with a clear upstream_* code, or
// `cancelled` with reason `deadline` — within its deadline, keep the text it had
// streamed, and leave no socket open to the upstream.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { remoteProviders } from '../src/models/providers.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import type { Task } from '../src/core/types.ts';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from './helpers/fake-upstream.ts';
import { api, eventually } from './helpers/server.ts';
import { assertRegistriesDrain, startLoggedServer, type LoggedServer } from './reliability.helpers.ts';

const TOKENS = Array.from({ length: 12 }, (_, i) => ` tok${i}`);

describe('upstream faults end tasks cleanly', () => {
  let up: FakeUpstream;
  let s: LoggedServer;

  before(async () => {
    up = await startFakeUpstream({ tokens: TOKENS, intervalMs: 10 });
    const env = { OPENAI_BASE_URL: up.baseURL, OPENAI_API_KEY: 'sk-upstream-test' };
    s = await startLoggedServer({
      level: 'warn',
      // One retry, so "retried and still failed" is covered without the SDK's multi-second backoff.
      models: createModelRegistry({
        defaultModel: 'openai:fake',
        env,
        providers: remoteProviders({ env, maxRetries: 1 }),
      }),
      runtime: { maxRunningPerOwner: 8 },
    });
  });
  after(async () => {
    await s.close();
    await up.close();
  });

  /** Runs one generate task against the upstream behaving as `o`; returns it once ended, with its run time. */
  async function runWith(
    o: FakeUpstreamOptions,
    deadlineMs = 10_000,
  ): Promise<{ task: Task; ms: number; requests: number }> {
    up.options = { tokens: TOKENS, intervalMs: 10, retryAfterMs: 5, ...o };
    const before = up.requests.length;
    const t0 = performance.now();
    const r = await api(s.url, 'POST', '/api/tasks', {
      body: { type: 'generate', input: { prompt: 'hi', model: 'openai:fake' }, deadline_ms: deadlineMs },
    });
    assert.equal(r.status, 202);
    const task = await s.runtime.wait(r.body.id, 'local', deadlineMs + 10_000);
    assert.ok(task, 'task exists');
    assert.ok(['completed', 'failed', 'cancelled'].includes(task.status), `ended, not ${task.status}`);
    return { task, ms: performance.now() - t0, requests: up.requests.length - before };
  }

  it('HTTP 500 (retried once): failed upstream_error naming the status', async () => {
    const { task, requests } = await runWith({ behaviour: 'error', status: 500 });
    assert.equal(task.status, 'failed');
    assert.equal(task.error?.code, 'upstream_error');
    assert.match(task.error?.message ?? '', /HTTP 500/);
    assert.equal(requests, 2, 'one try + one retry, no more');
  });

  it('HTTP 401 (not retried): failed upstream_error; the upstream key is not in the message', async () => {
    const { task, requests } = await runWith({ behaviour: 'error', status: 401, errorMessage: 'bad key' });
    assert.equal(task.status, 'failed');
    assert.equal(task.error?.code, 'upstream_error');
    assert.equal(requests, 1);
    assert.ok(!JSON.stringify(task).includes('sk-upstream-test'));
  });

  it('connection reset before any answer: failed upstream_unreachable', async () => {
    const { task } = await runWith({ behaviour: 'reset' });
    assert.equal(task.status, 'failed');
    assert.equal(task.error?.code, 'upstream_unreachable');
  });

  it('connection reset mid-stream: failed upstream_unreachable, the streamed text kept', async () => {
    const { task } = await runWith({ behaviour: 'reset-mid', resetAfter: 4 });
    assert.equal(task.status, 'failed');
    assert.equal(task.error?.code, 'upstream_unreachable');
    assert.equal(task.output_text, TOKENS.slice(0, 4).join(''));
  });

  it('malformed SSE: failed upstream_bad_response', async () => {
    const { task } = await runWith({ behaviour: 'malformed' });
    assert.equal(task.status, 'failed');
    assert.equal(task.error?.code, 'upstream_bad_response');
  });

  it('a hang is ended by the deadline: cancelled (deadline) on time, upstream socket closed', async () => {
    const deadline = 1200;
    const { task, ms } = await runWith({ behaviour: 'hang' }, deadline);
    assert.equal(task.status, 'cancelled');
    assert.equal(task.cancel?.reason, 'deadline');
    assert.ok(ms >= deadline - 50 && ms < deadline + 3000, `ended after ${Math.round(ms)} ms (deadline ${deadline})`);
    const req = up.requests.at(-1)!;
    await up.waitForSocketClose(req);
  });

  it('a slow drip past the deadline: cancelled (deadline) with the text so far; one within it completes', async () => {
    const slow = await runWith({ behaviour: 'stream', intervalMs: 250 }, 1300);
    assert.equal(slow.task.status, 'cancelled');
    assert.equal(slow.task.cancel?.reason, 'deadline');
    assert.ok(slow.task.output_text.length > 0, 'some tokens arrived');
    assert.ok(TOKENS.join('').startsWith(slow.task.output_text), 'a prefix of the answer');
    assert.ok(slow.task.output_text.length < TOKENS.join('').length, 'not the whole answer');
    const last = up.requests.at(-1)!;
    await up.waitForSocketClose(last);
    assert.ok(last.clientGoneAt !== null, 'leash hung up on the drip');

    const ok = await runWith({ behaviour: 'stream', intervalMs: 30 }, 10_000);
    assert.equal(ok.task.status, 'completed');
    assert.equal(ok.task.output_text, TOKENS.join(''));
  });

  it('a thread run on a failing upstream: the answer message is failed, the question kept', async () => {
    up.options = { behaviour: 'error', status: 503, retryAfterMs: 5 };
    const th = await api(s.url, 'POST', '/api/threads', { body: {} });
    const run = await api(s.url, 'POST', `/api/threads/${th.body.id}/runs`, {
      body: { content: 'are you there?', model: 'openai:fake' },
    });
    assert.equal(run.status, 202);
    const task = await s.runtime.wait(run.body.id, 'local', 10_000);
    assert.equal(task?.status, 'failed');
    assert.equal(task?.error?.code, 'upstream_error');
    const msgs = await api(s.url, 'GET', `/api/threads/${th.body.id}/messages`);
    const data = msgs.body.data as Array<{ role: string; content: string; status: string }>;
    assert.deepEqual(
      data.map((m) => [m.role, m.status]),
      [
        ['user', 'complete'],
        ['assistant', 'failed'],
      ],
    );
    assert.equal(data[0]!.content, 'are you there?');
  });

  it('afterwards: every upstream socket closed, registries back to zero, no unexpected error logged', async () => {
    assert.ok(up.requests.length >= 10);
    // Keep-alive sockets of answered requests close within the fake's 500 ms keep-alive.
    await eventually(async () => up.requests.every((r) => r.socketClosedAt !== null), 5000).catch(() => {
      const open = up.requests.filter((r) => r.socketClosedAt === null).map((r) => r.url);
      assert.deepEqual(open, [], 'upstream sockets still open');
    });
    await assertRegistriesDrain(s.runtime);
    assert.deepEqual(
      s.logsAtLeast(50).map((e) => e.msg),
      [],
    );
  });
});
