// GET /api/tasks/:id/events?format=ai-sdk (SPEC §7): every frame is a UIMessageChunk
// that ai 5, 6 and 7 accept, the text arrives once, a resume with Last-Event-ID
// continues the same message without repeating anything, and a cancelled or failed
// answer ends with `abort` / `error` and `[DONE]`.

import { parseSse } from '../src/client/sse.ts';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as ai6 from 'ai';
import * as ai5 from 'ai-v5';
import * as ai7 from 'ai-v7';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { api, eventually, startTestServer, type TestServer } from './helpers/server.ts';

const MODEL = 'openai:fake-model';
const TOKENS = Array.from({ length: 12 }, (_, i) => ` w${i}`);

interface Frame {
  id: number | null;
  data: string;
}

/** SSE frames as sent (comments dropped), so `[DONE]` and ids are seen as they are on the wire. */
async function readFrames(res: Response, stopAfter?: (f: Frame[]) => boolean): Promise<Frame[]> {
  const frames: Frame[] = [];
  for await (const f of parseSse(res.body!)) {
    frames.push({ id: f.id === null ? null : Number(f.id), data: f.data });
    if (stopAfter?.(frames)) break;
  }
  return frames;
}

const schemas = [
  ['ai 5', ai5.uiMessageChunkSchema()],
  ['ai 6', ai6.uiMessageChunkSchema()],
  ['ai 7', ai7.uiMessageChunkSchema()],
] as const;

/** Every frame but the final [DONE] must be a chunk all three AI SDK majors accept. */
async function assertValid(frames: Frame[]): Promise<Record<string, unknown>[]> {
  const chunks: Record<string, unknown>[] = [];
  for (const f of frames) {
    if (f.data === '[DONE]') continue;
    const value: unknown = JSON.parse(f.data);
    for (const [name, schema] of schemas) {
      const r = await schema.validate!(value);
      assert.ok(r.success, `${name} refuses ${f.data}`);
    }
    chunks.push(value as Record<string, unknown>);
  }
  return chunks;
}

const textOf = (chunks: Record<string, unknown>[]): string =>
  chunks
    .filter((c) => c.type === 'text-delta')
    .map((c) => c.delta as string)
    .join('');

describe('AI SDK UI message stream', () => {
  let stack: Stack;
  let upstream: FakeUpstream;
  let s: TestServer;
  before(async () => {
    stack = await startStack({
      upstream: { behaviour: 'stream', intervalMs: 20, tokens: TOKENS },
      defaultModel: MODEL,
      allow: ['simulated*', MODEL],
      sseKeepaliveMs: 50,
    });
    ({ s, upstream } = stack);
  });
  after(() => stack?.close());

  async function startRun(): Promise<{ taskId: string; messageId: string; threadId: string }> {
    const thread = await api(s.url, 'POST', '/api/threads', { body: {} });
    const run = await api(s.url, 'POST', `/api/threads/${thread.body.id}/runs`, { body: { content: 'hi' } });
    assert.equal(run.status, 202);
    return { taskId: run.body.id, messageId: run.body.assistant_message_id, threadId: thread.body.id };
  }
  const events = (taskId: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${s.url}/api/tasks/${taskId}/events?format=ai-sdk`, { headers });

  test('a completed answer: header, start … text … finish, ids, [DONE]; valid for ai 5, 6 and 7', async () => {
    const { taskId, messageId } = await startRun();
    const res = await events(taskId);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-vercel-ai-ui-message-stream'), 'v1');
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const frames = await readFrames(res);
    assert.equal(frames.at(-1)!.data, '[DONE]');
    const chunks = await assertValid(frames);
    assert.deepEqual(chunks[0], { type: 'start', messageId, messageMetadata: { taskId } });
    assert.equal(textOf(chunks), TOKENS.join(''));
    const types = chunks.map((c) => c.type);
    assert.equal(types.filter((t) => t === 'text-start').length, 1);
    assert.ok(types.indexOf('start-step') < types.indexOf('text-start'));
    assert.deepEqual(types.slice(-3), ['text-end', 'finish-step', 'finish']);
    const ids = new Set(chunks.filter((c) => String(c.type).startsWith('text-')).map((c) => c.id));
    assert.equal(ids.size, 1);
    // ids rise and name events; the last data frame before [DONE] names the terminal event.
    const seqs = frames.filter((f) => f.id !== null).map((f) => f.id!);
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
    );
    const task = await api(s.url, 'GET', `/api/tasks/${taskId}`);
    assert.equal(task.body.output_text, TOKENS.join(''));
    const log = await fetch(`${s.url}/api/tasks/${taskId}/events`).then((r) => r.text());
    const lastSeq = Math.max(...[...log.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1])));
    assert.equal(frames.at(-2)!.id, lastSeq);
  });

  test('resume with Last-Event-ID mid-text at every cut: nothing twice, nothing missing, no second start', async () => {
    const { taskId } = await startRun();
    const full = await readFrames(await events(taskId));
    const fullChunks = await assertValid(full);
    const cuts = full.filter((f) => f.id !== null).map((f) => f.id!);
    for (const cut of cuts) {
      const head = full.slice(0, full.findIndex((f) => f.id === cut) + 1);
      const tail = await readFrames(await events(taskId, { 'last-event-id': String(cut) }));
      assert.equal(tail.at(-1)!.data, '[DONE]', `cut ${cut}`);
      const joined = [...(await assertValid(head)), ...(await assertValid(tail))];
      assert.deepEqual(joined, fullChunks, `cut after seq ${cut}`);
    }
  });

  test('resume while the answer streams live: the joined stream is the answer once', async () => {
    const { taskId } = await startRun();
    const first = await readFrames(
      await events(taskId),
      (f) => f.filter((x) => x.data.includes('text-delta')).length >= 3,
    );
    const lastId = first.filter((f) => f.id !== null).at(-1)!.id!;
    // The frames after the last id-bearing frame belong to an event that resumes whole.
    const head = first.slice(0, first.findIndex((f) => f.id === lastId) + 1);
    const tail = await readFrames(await events(taskId, { 'last-event-id': String(lastId) }));
    const chunks = [...(await assertValid(head)), ...(await assertValid(tail))];
    assert.equal(textOf(chunks), TOKENS.join(''));
    assert.equal(chunks.filter((c) => c.type === 'start').length, 1);
    assert.equal(chunks.filter((c) => c.type === 'text-start').length, 1);
    assert.equal(chunks.at(-1)!.type, 'finish');
  });

  test('a cancelled answer: partial text, stopped metadata, abort, [DONE]', async () => {
    upstream.options = { behaviour: 'stream', intervalMs: 30, tokens: Array.from({ length: 300 }, (_, i) => ` t${i}`) };
    try {
      const { taskId } = await startRun();
      await eventually(async () => (await api(s.url, 'GET', `/api/tasks/${taskId}`)).body.output_text.length > 10);
      const cancel = await api(s.url, 'POST', `/api/tasks/${taskId}/cancel`, { body: {} });
      assert.ok(cancel.status === 200 || cancel.status === 202);
      const frames = await readFrames(await events(taskId));
      assert.equal(frames.at(-1)!.data, '[DONE]');
      const chunks = await assertValid(frames);
      const task = await api(s.url, 'GET', `/api/tasks/${taskId}`);
      assert.equal(task.body.status, 'cancelled');
      assert.equal(textOf(chunks), task.body.output_text);
      assert.deepEqual(
        chunks.slice(-4).map((c) => c.type),
        ['text-end', 'finish-step', 'message-metadata', 'abort'],
      );
      assert.deepEqual(chunks.at(-2)!.messageMetadata, {
        taskId,
        status: 'cancelled',
        stopped: true,
        cancelReason: 'user',
      });
      assert.ok(!chunks.some((c) => c.type === 'finish'));
    } finally {
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: TOKENS };
    }
  });

  test('a failed answer: error with errorText, [DONE]', async () => {
    upstream.options = { behaviour: 'error', status: 400, errorMessage: 'bad things' };
    try {
      const { taskId } = await startRun();
      const frames = await readFrames(await events(taskId));
      assert.equal(frames.at(-1)!.data, '[DONE]');
      const chunks = await assertValid(frames);
      const err = chunks.at(-1)!;
      assert.equal(err.type, 'error');
      assert.match(String(err.errorText), /\w+: /);
    } finally {
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: TOKENS };
    }
  });

  test('progress of a non-chat task is a transient data-leash-progress part; messageId is the task id', async () => {
    const created = await api(s.url, 'POST', '/api/tasks', {
      body: { type: 'analyze', input: { document: 'word '.repeat(160), chunk_size: 400, model: 'simulated' } },
    });
    assert.equal(created.status, 202);
    const chunks = await assertValid(await readFrames(await events(created.body.id)));
    assert.ok(chunks.some((c) => c.type === 'data-leash-progress'));
    assert.deepEqual(chunks[0], {
      type: 'start',
      messageId: created.body.id,
      messageMetadata: { taskId: created.body.id },
    });
    for (const c of chunks.filter((x) => String(x.type).startsWith('data-'))) {
      assert.match(String(c.type), /^data-leash-[a-z-]+$/);
      assert.equal(c.transient, true);
      assert.equal(typeof c.data, 'object');
    }
  });

  test('bad input: unknown format 400, bad Last-Event-ID 400, another task 404, resumed past the end', async () => {
    const { taskId } = await startRun();
    assert.equal((await api(s.url, 'GET', `/api/tasks/${taskId}/events?format=vercel`)).status, 400);
    const bad = await api(s.url, 'GET', `/api/tasks/${taskId}/events?format=ai-sdk`, {
      headers: { 'last-event-id': 'abc' },
    });
    assert.equal(bad.status, 400);
    assert.equal((await api(s.url, 'GET', `/api/tasks/task_nope/events?format=ai-sdk`)).status, 404);
    // Resumed past the end: only [DONE].
    const frames = await readFrames(await events(taskId));
    const last = frames.filter((f) => f.id !== null).at(-1)!.id!;
    const rest = await readFrames(await events(taskId, { 'last-event-id': String(last) }));
    assert.deepEqual(
      rest.map((f) => f.data),
      ['[DONE]'],
    );
  });
});

describe('AI SDK UI message stream across origins', () => {
  let s: TestServer;
  const ALLOWED = 'http://localhost:5173';
  before(async () => {
    s = await startTestServer({ security: { allowedOrigins: [ALLOWED] } });
  });
  after(async () => {
    await s.close();
  });

  test('an allowed origin can read both event streams (CORS headers on the hijacked stream); another cannot', async () => {
    const t = await api(s.url, 'POST', '/api/tasks', {
      body: { type: 'generate', input: { prompt: 'x', model: 'simulated' } },
    });
    assert.equal(t.status, 202);
    for (const format of ['', '?format=ai-sdk']) {
      const ok = await fetch(`${s.url}/api/tasks/${t.body.id}/events${format}`, { headers: { origin: ALLOWED } });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('access-control-allow-origin'), ALLOWED, `format ${format}`);
      assert.match(ok.headers.get('access-control-expose-headers') ?? '', /x-task-id/);
      assert.match(ok.headers.get('content-type') ?? '', /text\/event-stream/);
      await ok.body?.cancel();
      const other = await fetch(`${s.url}/api/tasks/${t.body.id}/events${format}`, {
        headers: { origin: 'http://evil.example' },
      });
      assert.equal(other.headers.get('access-control-allow-origin'), null);
      await other.body?.cancel();
    }
  });
});

describe('AI SDK UI message stream and thread-run keys between owners', () => {
  let s: TestServer;
  const A = 'key-alice-0123456789';
  const B = 'key-bob-0123456789ab';
  before(async () => {
    s = await startTestServer({
      apiKeys: new Map([
        [A, 'alice'],
        [B, 'bob'],
      ]),
      sseKeepaliveMs: 30,
    });
  });
  after(async () => {
    await s.close();
  });

  test("another owner's task answers 404 in ai-sdk format; the same Idempotency-Key is another run for another owner", async () => {
    const ta = await api(s.url, 'POST', '/api/threads', { body: {}, key: A });
    const run = (key: string, thread: string) =>
      api(s.url, 'POST', `/api/threads/${thread}/runs`, {
        body: { content: 'hi', model: 'simulated' },
        key,
        headers: { 'idempotency-key': 'same' },
      });
    const a = await run(A, ta.body.id);
    assert.equal(a.status, 202);
    const bob = await api(s.url, 'GET', `/api/tasks/${a.body.id}/events?format=ai-sdk`, { key: B });
    assert.equal(bob.status, 404);
    assert.doesNotMatch(JSON.stringify(bob.body), /text-delta|hi/);
    // Bob's run with the same key on Alice's thread is a 404, never Alice's run.
    assert.equal((await run(B, ta.body.id)).status, 404);
    const tb = await api(s.url, 'POST', '/api/threads', { body: {}, key: B });
    const b = await run(B, tb.body.id);
    assert.equal(b.status, 202);
    assert.notEqual(b.body.id, a.body.id);
  });

  test('keepalive comments while an answer is quiet', async () => {
    const t = await api(s.url, 'POST', '/api/threads', { body: {}, key: A });
    const r = await api(s.url, 'POST', `/api/threads/${t.body.id}/runs`, {
      body: { content: 'slow', model: 'simulated?tps=5&tokens=10' },
      key: A,
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const res = await fetch(`${s.url}/api/tasks/${r.body.id}/events?format=ai-sdk`, {
      headers: { authorization: `Bearer ${A}` },
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let raw = '';
    const until = Date.now() + 5000;
    while (!raw.includes(': keepalive') && Date.now() < until) raw += (await reader.read()).value ?? '';
    await reader.cancel();
    assert.match(raw, /^: keepalive$/m);
  });
});
