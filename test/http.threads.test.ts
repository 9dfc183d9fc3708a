// Threads over HTTP (SPEC §2), with seed 001's three failures as tests: the
// cancelled question must reach the model on the next run. Asserted on what a
// real upstream (the fake OpenAI-compatible server) received, and with the echo
// model, which answers with the transcript it was given.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CUT_SHORT_NOTE, NO_ANSWER_NOTE } from '../src/threads/context.ts';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { api, eventually, readSse, type TestServer } from './helpers/server.ts';

const SLOW = 'simulated?tps=40&tokens=400';
const ECHO = 'simulated:echo?tps=0';

describe('threads', () => {
  let stack: Stack;
  let s: TestServer;
  let upstream: FakeUpstream;

  before(async () => {
    stack = await startStack({
      upstream: { behaviour: 'stream', intervalMs: 30, tokens: Array.from({ length: 200 }, (_, i) => ` t${i}`) },
      allow: ['*'],
      defaultModel: 'simulated',
      apiKeys: new Map([
        ['k-alice', 'alice'],
        ['k-bob', 'bob'],
      ]),
    });
    ({ s, upstream } = stack);
  });
  after(() => stack?.close());

  const call = (method: string, path: string, body?: unknown, key = 'k-alice') =>
    api(s.url, method, path, { key, ...(body !== undefined && { body }) });

  async function newThread(): Promise<string> {
    const r = await call('POST', '/api/threads', { metadata: { title: 't' } });
    assert.equal(r.status, 201);
    assert.match(r.body.id, /^thread_/);
    assert.equal(r.body.status, 'idle');
    return r.body.id;
  }

  async function run(threadId: string, content: string, extra: Record<string, unknown> = {}) {
    const r = await call('POST', `/api/threads/${threadId}/runs`, { content, ...extra });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body as { id: string; status: string; cancelled_task_ids: string[] };
  }

  const waitTask = async (id: string) => (await call('GET', `/api/tasks/${id}/wait?timeout_s=20`)).body;
  const outputOf = async (id: string) => (await call('GET', `/api/tasks/${id}`)).body.output_text as string;
  const messages = async (threadId: string) =>
    (await call('GET', `/api/threads/${threadId}/messages`)).body.data as Array<{
      id: string;
      seq: number;
      role: string;
      content: string;
      status: string;
      task_id: string;
      usage: { output_tokens: number } | null;
    }>;

  it('seed 001: cancel, then "what did I ask?" — the model sees the cancelled question and the partial answer', async () => {
    const t = await newThread();
    const first = await run(t, 'In what year was Brazil founded?', { model: SLOW });
    await eventually(async () => (await outputOf(first.id)).length > 10);
    const c = await call('POST', `/api/tasks/${first.id}/cancel`);
    assert.ok([200, 202].includes(c.status));
    const second = await run(t, 'What did I just ask?', { model: ECHO });
    const done = await waitTask(second.id);
    assert.equal(done.status, 'completed');
    const transcript = done.result.text as string;
    assert.match(transcript, /\[user\] In what year was Brazil founded\?/);
    assert.ok(transcript.includes(CUT_SHORT_NOTE), 'the cut-short answer is marked for the model');
    const msgs = await messages(t);
    assert.deepEqual(
      msgs.map((m) => [m.role, m.status]),
      [
        ['user', 'complete'],
        ['assistant', 'cancelled'],
        ['user', 'complete'],
        ['assistant', 'complete'],
      ],
    );
    const cancelledTask = await waitTask(first.id);
    assert.equal(msgs[1]!.content, cancelledTask.output_text, 'the stored partial answer is what clients saw');
    assert.ok(msgs[1]!.content.length > 0);
    assert.ok(msgs[1]!.usage && msgs[1]!.usage.output_tokens > 0, 'usage is recorded for a cancelled run');
    assert.deepEqual(
      msgs.map((m) => m.seq),
      [1, 2, 3, 4],
    );
  });

  it('seed 001 with a real upstream: the next request carries the cancelled question; the cancelled call closed its socket', async () => {
    const t = await newThread();
    const n = upstream.requests.length;
    const first = await run(t, 'What is the capital of Australia?', { model: 'openai:fake-model' });
    const req1 = await upstream.waitForRequests(n + 1);
    await eventually(async () => (await outputOf(first.id)).length > 0);
    await call('POST', `/api/tasks/${first.id}/cancel`);
    await upstream.waitForSocketClose(req1);
    assert.equal(req1.tokensAfterClientGone, 0);
    const second = await run(t, 'What did I ask before?', { model: 'openai:fake-model' });
    const req2 = await upstream.waitForRequests(n + 2);
    const sent = (req2.body as { messages: Array<{ role: string; content: string }> }).messages;
    assert.deepEqual(sent[0], { role: 'user', content: 'What is the capital of Australia?' });
    assert.equal(sent[1]!.role, 'assistant');
    assert.ok(sent[1]!.content.endsWith(CUT_SHORT_NOTE));
    assert.deepEqual(sent.at(-1), { role: 'user', content: 'What did I ask before?' });
    await call('POST', `/api/tasks/${second.id}/cancel`);
    await waitTask(second.id);
  });

  it('seed 001: two cancels in a row, then ask — both questions are in the context', async () => {
    const t = await newThread();
    const a = await run(t, 'first question', { model: SLOW });
    await eventually(async () => (await outputOf(a.id)).length > 0);
    await call('POST', `/api/tasks/${a.id}/cancel`);
    // Cancelled before it could say anything: still in history, marked unanswered.
    const b = await run(t, 'second question', { model: SLOW, multitask: 'enqueue' });
    await call('POST', `/api/tasks/${b.id}/cancel`);
    const c = await run(t, 'what were my two questions?', { model: ECHO });
    const done = await waitTask(c.id);
    const transcript = done.result.text as string;
    assert.match(transcript, /\[user\] first question/);
    assert.match(transcript, /\[user\] second question/);
    assert.ok(transcript.indexOf('first question') < transcript.indexOf('second question'));
    const bTask = await waitTask(b.id);
    if (bTask.output_text === '') assert.ok(transcript.includes(NO_ANSWER_NOTE), 'an unanswered question is marked');
  });

  it('seed 001: cancel and ask at the same moment from two connections — the new run sees the cancelled turn', async () => {
    for (let i = 0; i < 5; i++) {
      const t = await newThread();
      const a = await run(t, `question ${i}`, { model: SLOW });
      await eventually(async () => (await outputOf(a.id)).length > 0);
      const [, b] = await Promise.all([
        call('POST', `/api/tasks/${a.id}/cancel`),
        call('POST', `/api/threads/${t}/runs`, { content: 'what did I ask?', model: ECHO, multitask: 'enqueue' }),
      ]);
      assert.equal(b.status, 202);
      const done = await waitTask(b.body.id);
      assert.match(done.result.text, new RegExp(`\\[user\\] question ${i}\\n\\[assistant\\] .+`));
      const partial = (await waitTask(a.id)).output_text as string;
      assert.ok(done.result.text.includes(partial.trim()), 'the partial answer the clients saw is in the context');
    }
  });

  it('multitask interrupt (default): the old run is cancelled as interrupted, its partial answer kept; no delta after cancelling', async () => {
    const t = await newThread();
    const a = await run(t, 'tell me a long story', { model: SLOW });
    const events = fetch(`${s.url}/api/tasks/${a.id}/events`, { headers: { authorization: 'Bearer k-alice' } }).then(
      (r) => readSse(r),
    );
    await eventually(async () => (await outputOf(a.id)).length > 0);
    const b = await run(t, 'stop, tell me a joke', { model: ECHO });
    assert.deepEqual(b.cancelled_task_ids, [a.id]);
    const old = await waitTask(a.id);
    assert.equal(old.status, 'cancelled');
    assert.equal(old.cancel.reason, 'interrupted');
    const frames = await events;
    const at = frames.findIndex((f) => f.event === 'task.cancelling');
    assert.ok(at > 0);
    assert.ok(frames.slice(at).every((f) => f.event !== 'output.delta'));
    assert.equal(frames.at(-1)!.event, 'task.cancelled');
    const done = await waitTask(b.id);
    assert.match(done.result.text, /\[user\] tell me a long story/);
    const msgs = await messages(t);
    assert.equal(msgs[1]!.status, 'cancelled');
    assert.equal(msgs[1]!.content, old.output_text);
  });

  it('multitask enqueue: runs one after another, in order', async () => {
    const t = await newThread();
    const a = await run(t, 'one', { model: 'simulated?tps=200&tokens=20' });
    const b = await run(t, 'two', { model: ECHO, multitask: 'enqueue' });
    assert.deepEqual(b.cancelled_task_ids, []);
    const [da, db] = [await waitTask(a.id), await waitTask(b.id)];
    assert.equal(da.status, 'completed');
    assert.equal(db.status, 'completed');
    assert.ok(Date.parse(db.started_at) >= Date.parse(da.ended_at), 'the second started after the first ended');
    assert.match(db.result.text, /\[user\] one\n\[assistant\] .+\n\[user\] two/);
  });

  it('multitask reject: 409 thread_busy while a run is active; thread status busy/idle', async () => {
    const t = await newThread();
    const a = await run(t, 'busy now', { model: SLOW });
    assert.equal((await call('GET', `/api/threads/${t}`)).body.status, 'busy');
    const r = await call('POST', `/api/threads/${t}/runs`, { content: 'again', multitask: 'reject' });
    assert.equal(r.status, 409);
    assert.equal(r.body.error.code, 'thread_busy');
    assert.equal((await messages(t)).length, 2, 'a rejected run stores nothing');
    await call('POST', `/api/tasks/${a.id}/cancel`);
    await waitTask(a.id);
    assert.equal((await call('GET', `/api/threads/${t}`)).body.status, 'idle');
  });

  it('multitask rollback: the old run is cancelled and its turn deleted', async () => {
    const t = await newThread();
    await waitTask((await run(t, 'kept question', { model: ECHO })).id);
    const a = await run(t, 'regret this', { model: SLOW });
    await eventually(async () => (await outputOf(a.id)).length > 0);
    const b = await run(t, 'instead, this', { model: ECHO, multitask: 'rollback' });
    const old = await waitTask(a.id);
    assert.equal(old.cancel.reason, 'rollback');
    const done = await waitTask(b.id);
    assert.doesNotMatch(done.result.text, /regret this/);
    assert.match(done.result.text, /kept question/);
    const msgs = await messages(t);
    assert.deepEqual(
      msgs.map((m) => m.content.split('\n')[0]!.slice(0, 20)).filter((_, i) => i % 2 === 0),
      ['kept question', 'instead, this'],
    );
  });

  it('the messages of a thread show an answer still streaming with its text so far', async () => {
    const id = await newThread();
    const r = await run(id, 'tell me a long story', { model: SLOW });
    // Text so far, while the answer is still streaming (the stored message holds none yet).
    const answer = await eventually(async () => {
      const a = (await messages(id)).at(-1)!;
      return a.role === 'assistant' && a.status === 'streaming' && a.content.length > 0 && a;
    });
    const seen = answer.content;
    await call('POST', `/api/tasks/${r.id}/cancel`);
    const done = await waitTask(r.id);
    assert.ok(done.output_text.startsWith(seen), 'what was shown is a prefix of the kept answer');
  });

  it('identical messages sent twice stay two messages', async () => {
    const t = await newThread();
    const a = await run(t, 'same words', { model: ECHO });
    await waitTask(a.id);
    const b = await run(t, 'same words', { model: ECHO });
    const done = await waitTask(b.id);
    assert.equal((done.result.text.match(/^\[user\] same words$/gm) ?? []).length, 2);
    const users = (await messages(t)).filter((m) => m.role === 'user');
    assert.equal(users.length, 2);
    assert.notEqual(users[0]!.id, users[1]!.id);
  });

  it('streams a run as SSE when asked', async () => {
    const t = await newThread();
    const res = await fetch(`${s.url}/api/threads/${t}/runs`, {
      method: 'POST',
      headers: { authorization: 'Bearer k-alice', 'content-type': 'application/json' },
      body: JSON.stringify({ content: 'hi', model: 'simulated?tps=0&tokens=5', stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const frames = await readSse(res);
    assert.equal(frames[0]!.event, 'task.queued');
    assert.equal(frames.at(-1)!.event, 'task.completed');
    const text = frames
      .filter((f) => f.event === 'output.delta')
      .map((f) => f.data.text)
      .join('');
    assert.equal(text.trim().split(/\s+/).length, 5, 'every token arrives (deltas of one tick are merged)');
    assert.equal(text, frames.at(-1)!.data.result.text);
  });

  it('bad input and other owners get clear errors', async () => {
    const t = await newThread();
    const empty = await call('POST', `/api/threads/${t}/runs`, { content: '' });
    assert.equal(empty.status, 400);
    assert.equal(empty.body.error.code, 'invalid_request');
    assert.equal(empty.body.error.details[0].path, 'content');
    const strategy = await call('POST', `/api/threads/${t}/runs`, { content: 'x', multitask: 'sometimes' });
    assert.equal(strategy.status, 400);
    const model = await call('POST', `/api/threads/${t}/runs`, { content: 'x', model: 'nope:thing' });
    assert.equal(model.status, 202, 'an unknown model fails the run, not the request');
    const failed = await waitTask(model.body.id);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error.code, 'unknown_model');
    assert.equal((await messages(t))[1]!.status, 'failed');
    assert.equal((await call('GET', '/api/threads/thread_missing/messages')).status, 404);
    for (const [m, p] of [
      ['GET', `/api/threads/${t}`],
      ['GET', `/api/threads/${t}/messages`],
      ['POST', `/api/threads/${t}/runs`],
      ['DELETE', `/api/threads/${t}`],
    ] as const) {
      const r = await call(m, p, m === 'POST' ? { content: 'x' } : undefined, 'k-bob');
      assert.equal(r.status, 404, `${m} ${p} for another owner`);
      assert.equal(r.body.error.code, 'not_found');
    }
    const list = await call('GET', '/api/threads', undefined, 'k-bob');
    assert.deepEqual(list.body.data, []);
    assert.equal((await call('DELETE', `/api/threads/${t}`)).status, 204);
    assert.equal((await call('GET', `/api/threads/${t}`)).status, 404);
  });
});
