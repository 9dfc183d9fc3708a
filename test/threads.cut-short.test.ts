// What the model is told about a cut-short turn names its real cause — the user
// stopped it, a new message interrupted it, its deadline passed, the client
// disconnected — asserted on the messages a real (fake OpenAI-compatible) upstream
// received for the next turn.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { buildModelContext } from '../src/threads/context.ts';
import { cutShortNote, noAnswerNote } from '../src/threads/cut-short.ts';
import type { Message } from '../src/store/store.ts';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { api, eventually, type TestServer } from './helpers/server.ts';

const MODEL = 'openai:fake-model';

describe('the cut-short note names the cause', () => {
  let stack: Stack;
  let s: TestServer;
  let upstream: FakeUpstream;

  before(async () => {
    stack = await startStack({
      upstream: {
        behaviour: 'stream',
        intervalMs: 30,
        tokens: Array.from({ length: 300 }, (_, i) => ` t${i}`), // 9 s: only a stop ends it in time
      },
      defaultModel: 'simulated',
      allow: ['simulated*', MODEL],
    });
    ({ s, upstream } = stack);
  });
  after(() => stack?.close());

  const call = (method: string, path: string, body?: unknown) =>
    api(s.url, method, path, { ...(body !== undefined && { body }) });
  const newThread = async (): Promise<string> => (await call('POST', '/api/threads', {})).body.id;
  const run = async (thread: string, content: string, extra: Record<string, unknown> = {}) => {
    const r = await call('POST', `/api/threads/${thread}/runs`, { content, model: MODEL, ...extra });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body as { id: string; status: string };
  };
  const waitTask = async (id: string) => (await call('GET', `/api/tasks/${id}/wait?timeout_s=20`)).body;
  const hasOutput = (id: string) => eventually(async () => (await call('GET', `/api/tasks/${id}`)).body.output_text);

  /** Starts the next turn and returns what the upstream was sent for it (then stops it). */
  async function nextTurnSees(thread: string): Promise<Array<{ role: string; content: string }>> {
    const n = upstream.requests.length;
    const next = await run(thread, 'What happened?', { multitask: 'enqueue' });
    const req = await upstream.waitForRequests(n + 1);
    await call('POST', `/api/tasks/${next.id}/cancel`);
    await waitTask(next.id);
    return (req.body as { messages: Array<{ role: string; content: string }> }).messages;
  }

  it('user: the user stopped it', async () => {
    const t = await newThread();
    const first = await run(t, 'Tell me a story');
    await hasOutput(first.id);
    await call('POST', `/api/tasks/${first.id}/cancel`);
    assert.equal((await waitTask(first.id)).cancel.reason, 'user');
    const sent = await nextTurnSees(t);
    assert.equal(sent[1]!.role, 'assistant');
    assert.ok(sent[1]!.content.endsWith(`\n\n${cutShortNote('user')}`), sent[1]!.content);
    assert.match(cutShortNote('user'), /the user stopped it/);
  });

  it('interrupted: a new message interrupted it', async () => {
    const t = await newThread();
    const first = await run(t, 'Tell me a story');
    await hasOutput(first.id);
    const n = upstream.requests.length;
    const second = await run(t, 'Actually, a poem'); // multitask: interrupt (the default)
    assert.equal((await waitTask(first.id)).cancel.reason, 'interrupted');
    const req = await upstream.waitForRequests(n + 1);
    const sent = (req.body as { messages: Array<{ role: string; content: string }> }).messages;
    assert.ok(sent[1]!.content.endsWith(`\n\n${cutShortNote('interrupted')}`), sent[1]!.content);
    assert.match(cutShortNote('interrupted'), /new message/);
    assert.doesNotMatch(sent[1]!.content, /the user stopped it/);
    await call('POST', `/api/tasks/${second.id}/cancel`);
    await waitTask(second.id);
  });

  it('deadline: its deadline passed (while answering, and while still queued)', async () => {
    const t = await newThread();
    const first = await run(t, 'Tell me a long story', { deadline_ms: 1000 });
    await hasOutput(first.id);
    // Queued behind it in the thread, it never starts before its own deadline: the reaper ends it.
    const second = await run(t, 'And a second one', { multitask: 'enqueue', deadline_ms: 300 });
    assert.equal(second.status, 'queued');
    assert.equal((await waitTask(second.id)).cancel.reason, 'deadline');
    assert.equal((await waitTask(first.id)).cancel.reason, 'deadline');
    const sent = await nextTurnSees(t);
    assert.deepEqual(
      sent.map((m) => m.role),
      ['user', 'assistant', 'user', 'assistant', 'user'],
    );
    assert.ok(sent[1]!.content.endsWith(`\n\n${cutShortNote('deadline')}`), sent[1]!.content);
    assert.equal(sent[3]!.content, noAnswerNote('deadline'));
    assert.match(cutShortNote('deadline'), /deadline passed/);
  });

  it('disconnect: the client went away from a streamed run', async () => {
    const t = await newThread();
    const ac = new AbortController();
    const res = await fetch(`${s.url}/api/threads/${t}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ content: 'Tell me a story', model: MODEL, stream: true }),
      signal: ac.signal,
    });
    const id = res.headers.get('x-task-id');
    assert.ok(id, 'the streamed run names its task');
    await hasOutput(id);
    ac.abort();
    assert.equal((await waitTask(id)).cancel.reason, 'disconnect');
    const sent = await nextTurnSees(t);
    assert.ok(sent[1]!.content.endsWith(`\n\n${cutShortNote('disconnect')}`), sent[1]!.content);
    assert.match(cutShortNote('disconnect'), /disconnected/);
  });
});

describe('buildModelContext', () => {
  const msg = (over: Partial<Message>): Message => ({
    id: 'm',
    thread_id: 'th',
    seq: 1,
    role: 'assistant',
    content: '',
    status: 'cancelled',
    task_id: 'task_1',
    created_at: '2025-01-01T00:00:00.000Z',
    usage: null,
    ...over,
  });

  it('shutdown, and an unknown cause, get their own notes', () => {
    const history = [msg({ content: 'partial' }), msg({ task_id: 'task_2' }), msg({ task_id: 'task_3' })];
    const out = buildModelContext(history, undefined, {
      cancelReasons: new Map([
        ['task_1', 'shutdown'],
        ['task_2', 'shutdown'],
      ]),
    });
    assert.equal(out[0]!.content, `partial\n\n${cutShortNote('shutdown')}`);
    assert.match(cutShortNote('shutdown'), /server shut down/);
    assert.equal(out[1]!.content, noAnswerNote('shutdown'));
    assert.equal(out[2]!.content, noAnswerNote(null));
    assert.doesNotMatch(noAnswerNote(null), /user/);
  });
});
