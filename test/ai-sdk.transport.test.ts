// LeashChatTransport (leash/ai-sdk) in Node against a real server and a counting fake
// upstream: what reaches useChat (assembled with the AI SDK's own readUIMessageStream),
// which aborts are a Stop on the server and which are not, quiet reconnects after a
// cut connection, loadChat, and Idempotency-Key on thread runs.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readUIMessageStream, type UIMessage, type UIMessageChunk } from 'ai';
import { LeashChatTransport } from 'leash/ai-sdk';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { api, eventually, type TestServer } from './helpers/server.ts';

const MODEL = 'openai:fake-model';
const SHORT = Array.from({ length: 10 }, (_, i) => ` s${i}`);
const LONG = Array.from({ length: 400 }, (_, i) => ` t${i}`);

const userMessage = (text: string): UIMessage => ({
  id: `u_${Math.random()}`,
  role: 'user',
  parts: [{ type: 'text', text }],
});

async function collect(stream: ReadableStream<UIMessageChunk>): Promise<UIMessageChunk[]> {
  const out: UIMessageChunk[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return out;
    out.push(value);
  }
}

async function assemble(chunks: UIMessageChunk[]): Promise<UIMessage> {
  let last: UIMessage | undefined;
  const stream = new ReadableStream<UIMessageChunk>({
    start(c) {
      for (const x of chunks) c.enqueue(x);
      c.close();
    },
  });
  for await (const m of readUIMessageStream({ stream })) last = m;
  return last!;
}

const textOf = (m: UIMessage): string => m.parts.map((p) => (p.type === 'text' ? p.text : '')).join('');

describe('LeashChatTransport', () => {
  let stack: Stack;
  let upstream: FakeUpstream;
  let s: TestServer;
  let transport: LeashChatTransport;
  before(async () => {
    stack = await startStack({
      upstream: { behaviour: 'stream', intervalMs: 15, tokens: SHORT },
      defaultModel: MODEL,
      allow: ['simulated*', MODEL],
    });
    ({ s, upstream } = stack);
    transport = new LeashChatTransport({ baseUrl: s.url });
  });
  after(() => stack?.close());
  const task = async (id: string) => (await api(s.url, 'GET', `/api/tasks/${id}`)).body;
  const activeTaskId = async (threadId: string): Promise<string> =>
    eventually(async () => {
      const r = await api(s.url, 'GET', `/api/tasks?thread_id=${threadId}&limit=1`);
      return r.body.data[0]?.id as string | undefined;
    });

  test('sendMessages: the answer streams and ends, one message with the whole text and the task id', async () => {
    upstream.options = { behaviour: 'stream', intervalMs: 15, tokens: SHORT };
    const chatId = await transport.createChat();
    const stream = await transport.sendMessages({
      trigger: 'submit-message',
      chatId,
      messageId: undefined,
      messages: [userMessage('hello')],
      abortSignal: new AbortController().signal,
    });
    const m = await assemble(await collect(stream));
    assert.equal(textOf(m), SHORT.join(''));
    const meta = m.metadata as { taskId: string; status: string };
    assert.equal(meta.status, 'completed');
    assert.equal((await task(meta.taskId)).status, 'completed');
    const history = await transport.loadChat(chatId);
    assert.deepEqual(
      history.map((x) => [x.role, textOf(x)]),
      [
        ['user', 'hello'],
        ['assistant', SHORT.join('')],
      ],
    );
    assert.equal(history[1]!.id, m.id, 'the streamed message id is the stored assistant message id');
  });

  test('abortSignal (useChat stop) cancels the task on the server and closes the upstream socket', async () => {
    upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: LONG };
    const before = upstream.requests.length;
    const chatId = await transport.createChat();
    const ac = new AbortController();
    const stream = await transport.sendMessages({
      trigger: 'submit-message',
      chatId,
      messageId: undefined,
      messages: [userMessage('long one')],
      abortSignal: ac.signal,
    });
    const reader = stream.getReader();
    let deltas = 0;
    while (deltas < 5) {
      const { value } = await reader.read();
      if (value?.type === 'text-delta') deltas++;
    }
    ac.abort();
    await reader.cancel().catch(() => {});
    const taskId = await activeTaskId(chatId);
    const t = await eventually(async () => {
      const x = await task(taskId);
      return x.status === 'cancelled' ? x : null;
    });
    assert.equal(t.cancel.reason, 'user');
    const req = upstream.requests[before]!;
    await upstream.waitForSocketClose(req, 5000);
    assert.ok(req.tokensWritten < LONG.length);
    const history = await transport.loadChat(chatId);
    const answer = history.at(-1)!;
    assert.equal(answer.role, 'assistant');
    assert.deepEqual(answer.metadata, { taskId, status: 'cancelled', stopped: true });
    assert.equal(textOf(answer), t.output_text);
    assert.ok(textOf(answer).length > 0);
  });

  test('a Stop before the run was answered still cancels the run once it exists', async () => {
    upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: LONG };
    const chatId = await transport.createChat();
    const ac = new AbortController();
    const p = transport.sendMessages({
      trigger: 'submit-message',
      chatId,
      messageId: undefined,
      messages: [userMessage('stop me at once')],
      abortSignal: ac.signal,
    });
    ac.abort();
    await assert.rejects(p, { name: 'AbortError' });
    const taskId = await activeTaskId(chatId);
    await eventually(async () => (await task(taskId)).status === 'cancelled');
  });

  test('the reader cancelling the stream is not a stop: the answer runs on', async () => {
    upstream.options = { behaviour: 'stream', intervalMs: 10, tokens: SHORT };
    const chatId = await transport.createChat();
    const stream = await transport.sendMessages({
      trigger: 'submit-message',
      chatId,
      messageId: undefined,
      messages: [userMessage('hi')],
      abortSignal: new AbortController().signal,
    });
    const reader = stream.getReader();
    await reader.read();
    await reader.cancel();
    const taskId = await activeTaskId(chatId);
    await eventually(async () => (await task(taskId)).status === 'completed');
  });

  test('reconnectToStream: null without an answer in flight; else the whole answer from its start; loadChat leaves it out', async () => {
    const chatId = await transport.createChat();
    assert.equal(await transport.reconnectToStream({ chatId }), null);
    upstream.options = { behaviour: 'stream', intervalMs: 15, tokens: SHORT.concat(SHORT) };
    const run = await api(s.url, 'POST', `/api/threads/${chatId}/runs`, { body: { content: 'again' } });
    await eventually(async () => (await task(run.body.id)).output_text.length > 5);
    const fresh = new LeashChatTransport({ baseUrl: s.url }); // a reloaded page
    const history = await fresh.loadChat(chatId);
    assert.deepEqual(
      history.map((m) => m.role),
      ['user'],
    );
    const stream = await fresh.reconnectToStream({ chatId, abortSignal: new AbortController().signal });
    assert.ok(stream);
    const chunks = await collect(stream);
    assert.equal(chunks[0]!.type, 'start');
    const m = await assemble(chunks);
    assert.equal(m.id, run.body.assistant_message_id);
    assert.equal(textOf(m), SHORT.concat(SHORT).join(''));
    // Ended: nothing to resume.
    assert.equal(await fresh.reconnectToStream({ chatId }), null);
  });

  test('a resume replaced by a newer one (same tick) is not a stop; an aborted resume alone is', async () => {
    upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: LONG };
    const chatId = await transport.createChat();
    const run = await api(s.url, 'POST', `/api/threads/${chatId}/runs`, { body: { content: 'resume me' } });
    const a = new AbortController();
    const first = transport.reconnectToStream({ chatId, abortSignal: a.signal });
    const streamA = await first;
    assert.ok(streamA);
    // What useChat does on StrictMode's second mount: abort the first resume, start another.
    const b = new AbortController();
    a.abort();
    const streamB = await transport.reconnectToStream({ chatId, abortSignal: b.signal });
    assert.ok(streamB);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await task(run.body.id)).status, 'running');
    const reader = streamB.getReader();
    await reader.read();
    b.abort(); // useChat's stop() on a resumed answer
    await eventually(async () => (await task(run.body.id)).status === 'cancelled');
  });

  test('a connection cut mid-answer is resumed with Last-Event-ID: every token once', async () => {
    upstream.options = { behaviour: 'stream', intervalMs: 15, tokens: SHORT.concat(SHORT, SHORT) };
    const lastEventIds: (string | null)[] = [];
    let cut = false;
    const cutting = new LeashChatTransport({
      baseUrl: s.url,
      reconnect: { initialDelayMs: 20 },
      fetch: async (input, init) => {
        const url = String(input);
        const res = await fetch(input, init);
        if (!url.includes('format=ai-sdk')) return res;
        lastEventIds.push(new Headers(init?.headers).get('last-event-id'));
        if (cut) return res;
        cut = true;
        // Pass everything up to the end of the text-start frame (a frame without an id, in the middle of
        // its event's group), then fail like a dropped network.
        let seen = '';
        const reader = res.body!.getReader();
        const enc = new TextEncoder();
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            const { value, done } = await reader.read();
            if (done) return c.close();
            const before = seen.length;
            seen += new TextDecoder().decode(value);
            const at = seen.indexOf('"type":"text-start"');
            if (at >= 0) {
              const end = seen.indexOf('\n\n', at) + 2;
              c.enqueue(enc.encode(seen.slice(before, end)));
              await reader.cancel();
              c.error(new TypeError('network error'));
              return;
            }
            c.enqueue(value);
          },
        });
        return new Response(body, { status: res.status, headers: res.headers });
      },
    });
    const chatId = await cutting.createChat();
    const stream = await cutting.sendMessages({
      trigger: 'submit-message',
      chatId,
      messageId: undefined,
      messages: [userMessage('cut me')],
      abortSignal: new AbortController().signal,
    });
    const chunks = await collect(stream);
    const m = await assemble(chunks);
    assert.equal(textOf(m), SHORT.concat(SHORT, SHORT).join(''));
    assert.equal(chunks.filter((c) => c.type === 'start').length, 1);
    assert.equal(chunks.filter((c) => c.type === 'text-start').length, 1);
    assert.equal(lastEventIds.length, 2);
    assert.equal(lastEventIds[0], null);
    assert.match(String(lastEventIds[1]), /^\d+$/);
  });

  test('Idempotency-Key on thread runs: a retry is the same run, one turn in history; bad keys 400', async () => {
    upstream.options = { behaviour: 'stream', intervalMs: 5, tokens: SHORT };
    const chatId = await transport.createChat();
    const post = (key: string) =>
      api(s.url, 'POST', `/api/threads/${chatId}/runs`, {
        body: { content: 'once' },
        headers: { 'idempotency-key': key },
      });
    const [a, b] = await Promise.all([post('k-1'), post('k-1')]);
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.equal(a.body.id, b.body.id);
    assert.equal([a, b].filter((r) => r.headers.get('idempotent-replayed') === 'true').length, 1);
    const c = await post('k-2');
    assert.notEqual(c.body.id, a.body.id);
    await eventually(async () => (await task(c.body.id)).status === 'completed');
    const msgs = (await api(s.url, 'GET', `/api/threads/${chatId}/messages`)).body.data;
    assert.equal(msgs.filter((m: { role: string }) => m.role === 'user').length, 2);
    assert.equal((await post('bad key')).status, 400);
    // Another thread with the same key is another run.
    const other = await transport.createChat();
    const d = await api(s.url, 'POST', `/api/threads/${other}/runs`, {
      body: { content: 'once' },
      headers: { 'idempotency-key': 'k-1' },
    });
    assert.notEqual(d.body.id, a.body.id);
  });

  test('an unknown chat id fails sendMessages with the 404, and creates nothing', async () => {
    await assert.rejects(
      transport.sendMessages({
        trigger: 'submit-message',
        chatId: 'thread_nope',
        messageId: undefined,
        messages: [userMessage('x')],
        abortSignal: undefined,
      }),
      /404|not_found/,
    );
  });
});
