// Server-Sent Events: replay, live follow, resume without duplicates or gaps,
// streamed create, and what a closed connection does (on_disconnect).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { api, eventually, readSse, startTestServer } from './helpers/server.ts';
import type { SseFrame, TestServer } from './helpers/server.ts';
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { formatSseEvent, resumeAfter, streamSse } from '../src/server/sse.ts';
import type { TaskEvent } from '../src/core/types.ts';

const SLOW = 'simulated?tps=20&tokens=100000';
const gen = (model: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: 'generate',
  input: { prompt: 'tell me', model },
  ...extra,
});

function assertContiguous(frames: SseFrame[], from: number): void {
  frames.forEach((f, i) => {
    assert.equal(f.id, from + i, `frame ${i} has seq ${f.id}, expected ${from + i}`);
    assert.equal(f.data.seq, f.id);
  });
}

function assertEndsTerminal(frames: SseFrame[], type: string): void {
  const terminal = frames.filter((f) => ['task.completed', 'task.failed', 'task.cancelled'].includes(f.event));
  assert.equal(terminal.length, 1, 'exactly one terminal event');
  assert.equal(frames.at(-1)?.event, type);
}

describe('SSE', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ sseKeepaliveMs: 50, runtime: { maxRunningPerOwner: 50 } });
  });
  after(() => s.close());

  it('replays a finished task in full, then ends', async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { body: gen('simulated?tps=0&tokens=12') })).body;
    const done = (await api(s.url, 'GET', `/api/tasks/${t.id}/wait?timeout_s=30`)).body;
    const res = await fetch(`${s.url}/api/tasks/${t.id}/events`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    assert.equal(res.headers.get('x-accel-buffering'), 'no');
    const frames = await readSse(res);
    assertContiguous(frames, 1);
    assert.equal(frames[0]?.event, 'task.queued');
    assert.equal(frames[1]?.event, 'task.started');
    assertEndsTerminal(frames, 'task.completed');
    for (const f of frames) assert.equal(f.data.task_id, t.id);
    const text = frames
      .filter((f) => f.event === 'output.delta')
      .map((f) => f.data.text)
      .join('');
    assert.equal(text, done.result.text);
    assert.deepEqual(frames.at(-1)?.data.result, done.result);
  });

  it('follows a running task live until its terminal event, with keepalive comments', async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { body: gen('simulated?tps=40&tokens=10') })).body;
    const comments: string[] = [];
    const res = await fetch(`${s.url}/api/tasks/${t.id}/events`);
    const frames = await readSse(res, { onComment: (l) => comments.push(l) });
    assertContiguous(frames, 1);
    assertEndsTerminal(frames, 'task.completed');
    assert.equal(frames.filter((f) => f.event === 'output.delta').length, 10);
    assert.ok(comments.length >= 1, 'a keepalive comment while waiting (interval 50 ms, stream ~250 ms)');
    assert.ok(comments.every((c) => c === ': keepalive'));
  });

  it('resumes after Last-Event-ID or ?after= without duplicates or gaps', async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { body: gen('simulated?tps=100&tokens=30') })).body;
    const ac = new AbortController();
    const first = await readSse(await fetch(`${s.url}/api/tasks/${t.id}/events`, { signal: ac.signal }), {
      until: (f) => (f.id ?? 0) >= 6,
    });
    ac.abort();
    const lastId = first.at(-1)!.id!;
    assert.equal(lastId, 6);

    const rest = await readSse(
      await fetch(`${s.url}/api/tasks/${t.id}/events`, { headers: { 'last-event-id': String(lastId) } }),
    );
    assertContiguous(rest, lastId + 1);
    assertEndsTerminal(rest, 'task.completed');
    const joined = [...first, ...rest];
    assertContiguous(joined, 1);

    const full = await readSse(await fetch(`${s.url}/api/tasks/${t.id}/events`));
    assert.deepEqual(
      joined.map((f) => [f.id, f.event]),
      full.map((f) => [f.id, f.event]),
    );

    const q = await readSse(await fetch(`${s.url}/api/tasks/${t.id}/events?after=3`));
    assertContiguous(q, 4);
    // The header wins over the query (EventSource reconnects keep the original URL).
    const both = await readSse(
      await fetch(`${s.url}/api/tasks/${t.id}/events?after=3`, { headers: { 'last-event-id': '10' } }),
    );
    assertContiguous(both, 11);
    const end = await readSse(await fetch(`${s.url}/api/tasks/${t.id}/events?after=${full.at(-1)!.id}`));
    assert.deepEqual(end, [], 'nothing after the terminal event');
  });

  it('rejects a malformed Last-Event-ID or after', async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { body: gen('simulated?tps=0&tokens=1') })).body;
    const h = await api(s.url, 'GET', `/api/tasks/${t.id}/events`, { headers: { 'last-event-id': 'abc' } });
    assert.equal(h.status, 400);
    assert.equal(h.body.error.details[0].path, 'Last-Event-ID');
    const q = await api(s.url, 'GET', `/api/tasks/${t.id}/events?after=-2`);
    assert.equal(q.status, 400);
    assert.equal(q.body.error.details[0].path, 'after');
  });

  it('no output.delta after task.cancelling', async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { body: gen('simulated?tps=200&tokens=100000') })).body;
    const res = await fetch(`${s.url}/api/tasks/${t.id}/events`);
    let asked = false;
    const frames = await readSse(res, {
      until: (f) => {
        if (f.event === 'output.delta' && (f.id ?? 0) >= 8 && !asked) {
          asked = true;
          void api(s.url, 'POST', `/api/tasks/${t.id}/cancel`);
        }
        return false;
      },
    });
    assertContiguous(frames, 1);
    assertEndsTerminal(frames, 'task.cancelled');
    const at = frames.findIndex((f) => f.event === 'task.cancelling');
    assert.ok(at > 0, 'task.cancelling was streamed');
    assert.equal(frames[at]!.data.reason, 'user');
    assert.ok(!frames.slice(at).some((f) => f.event === 'output.delta'), 'no delta after cancelling');
    const last = frames.at(-1)!;
    const deltas = frames
      .slice(0, at)
      .filter((f) => f.event === 'output.delta')
      .map((f) => f.data.text)
      .join('');
    assert.equal(last.data.output_text, deltas, 'output_text is exactly what was streamed');
  });

  it('POST stream=true answers with the event stream at once', async () => {
    const res = await fetch(`${s.url}/api/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(gen('simulated?tps=0&tokens=5', { stream: true })),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const id = res.headers.get('x-task-id');
    assert.match(id ?? '', /^task_/);
    assert.equal(res.headers.get('location'), `/api/tasks/${id}`);
    const frames = await readSse(res);
    assertContiguous(frames, 1);
    assert.equal(frames[0]?.event, 'task.queued');
    assert.equal(frames[0]?.data.task_id, id);
    assertEndsTerminal(frames, 'task.completed');
  });

  it('Accept: text/event-stream streams the create too', async () => {
    const res = await fetch(`${s.url}/api/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(gen('simulated?tps=0&tokens=3')),
    });
    assert.equal(res.status, 200);
    const frames = await readSse(res);
    assertEndsTerminal(frames, 'task.completed');
  });

  it('a streamed create that fails validation answers JSON, not a stream', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: { type: 'nope', input: {}, stream: true } });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'unknown_task_type');
  });

  it('streamed create: closing the connection cancels the task (reason disconnect)', async () => {
    const ac = new AbortController();
    const res = await fetch(`${s.url}/api/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(gen(SLOW, { stream: true })),
      signal: ac.signal,
    });
    const id = res.headers.get('x-task-id')!;
    await readSse(res, { until: (f) => f.event === 'output.delta' }).catch(() => []);
    ac.abort();
    const task = await eventually(async () => {
      const t = (await api(s.url, 'GET', `/api/tasks/${id}`)).body;
      return t.status === 'cancelled' ? t : null;
    });
    assert.equal(task.cancel.reason, 'disconnect');
    assert.ok(task.output_text.length > 0, 'partial output kept');
  });

  it('streamed create with on_disconnect=continue: the task outlives the connection', async () => {
    const ac = new AbortController();
    const res = await fetch(`${s.url}/api/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(gen('simulated?tps=100&tokens=30', { stream: true, on_disconnect: 'continue' })),
      signal: ac.signal,
    });
    const id = res.headers.get('x-task-id')!;
    await readSse(res, { until: (f) => f.event === 'output.delta' }).catch(() => []);
    ac.abort();
    const w = await api(s.url, 'GET', `/api/tasks/${id}/wait?timeout_s=30`);
    assert.equal(w.body.status, 'completed');
    assert.equal(w.body.cancel, null);
  });

  it('closing an events stream is not a stop, unless on_disconnect=cancel is asked', async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) })).body;
    const ac = new AbortController();
    await readSse(await fetch(`${s.url}/api/tasks/${t.id}/events`, { signal: ac.signal }), {
      until: (f) => f.event === 'output.delta',
    });
    ac.abort();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await api(s.url, 'GET', `/api/tasks/${t.id}`)).body.status, 'running');

    const ac2 = new AbortController();
    await readSse(await fetch(`${s.url}/api/tasks/${t.id}/events?on_disconnect=cancel`, { signal: ac2.signal }), {
      until: (f) => f.event === 'output.delta',
    });
    ac2.abort();
    const ended = await eventually(async () => {
      const b = (await api(s.url, 'GET', `/api/tasks/${t.id}`)).body;
      return b.status === 'cancelled' ? b : null;
    });
    assert.equal(ended.cancel.reason, 'disconnect');
  });

  it('server shutdown ends open streams with the terminal event', async () => {
    const own = await startTestServer();
    const t = (await api(own.url, 'POST', '/api/tasks', { body: gen(SLOW) })).body;
    const res = await fetch(`${own.url}/api/tasks/${t.id}/events`);
    const reading = readSse(res);
    await eventually(async () => (await api(own.url, 'GET', `/api/tasks/${t.id}`)).body.status === 'running');
    await own.close();
    const frames = await reading;
    assertContiguous(frames, 1);
    assertEndsTerminal(frames, 'task.cancelled');
    assert.equal(frames.at(-1)!.data.reason, 'shutdown');
  });
});

describe('SSE helpers', () => {
  it('formats one frame per event with task_id and seq in data', () => {
    const out = formatSseEvent({
      type: 'output.delta',
      data: { text: 'a\nb' },
      task_id: 'task_x',
      seq: 7,
      created_at: '2020-01-01T00:00:00.000Z',
    });
    assert.equal(out, 'id: 7\nevent: output.delta\ndata: {"text":"a\\nb","task_id":"task_x","seq":7}\n\n');
  });

  it('resumeAfter: header wins, junk is null', () => {
    assert.equal(resumeAfter(undefined, undefined), 0);
    assert.equal(resumeAfter(undefined, 4), 4);
    assert.equal(resumeAfter('9', 4), 9);
    assert.equal(resumeAfter(' 12 ', undefined), 12);
    assert.equal(resumeAfter('', 3), 3);
    assert.equal(resumeAfter('x1', 3), null);
    assert.equal(resumeAfter('-1', undefined), null);
    assert.equal(resumeAfter('1.5', undefined), null);
  });

  it('waits for drain when the socket buffer is full, and stops reading when the client leaves', async () => {
    const res = new FakeResponse();
    res.full = true; // every write reports a full buffer
    let pulled = 0;
    let sourceSignal: AbortSignal | null = null;
    async function* source(signal: AbortSignal): AsyncGenerator<TaskEvent> {
      sourceSignal = signal;
      for (let seq = 1; seq < 1000; seq++) {
        pulled++;
        yield { type: 'output.delta', data: { text: 'x' }, task_id: 't', seq, created_at: '' };
      }
    }
    const done = streamSse(res as unknown as ServerResponse, source, { keepaliveMs: 60_000 });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(res.chunks.length, 1, 'no second write before drain');
    assert.equal(pulled, 1, 'the source is not read ahead while blocked');
    res.emit('drain');
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(res.chunks.length, 2);
    res.close(); // client gone while blocked on drain
    assert.equal(await done, 'client_gone');
    assert.equal(sourceSignal!.aborted, true, 'the reader was told to stop');
    assert.ok(pulled <= 3);
    assert.equal(res.writableEnded, true);
  });

  it('ends after the terminal event, and on the server signal', async () => {
    const res = new FakeResponse();
    async function* source(): AsyncGenerator<TaskEvent> {
      yield { type: 'task.completed', data: { result: 1 }, task_id: 't', seq: 1, created_at: '' };
      yield { type: 'output.delta', data: { text: 'never' }, task_id: 't', seq: 2, created_at: '' };
    }
    assert.equal(await streamSse(res as unknown as ServerResponse, source), 'terminal');
    assert.equal(res.chunks.length, 1);
    assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(res.headers['cache-control'], 'no-cache');
    assert.equal(res.headers['x-accel-buffering'], 'no');

    const res2 = new FakeResponse();
    const server = new AbortController();
    // A source with nothing to say until it is told to stop.
    const idle = (signal: AbortSignal): AsyncIterable<TaskEvent> => ({
      [Symbol.asyncIterator]: () => ({
        next: () =>
          new Promise<IteratorResult<TaskEvent>>((r) =>
            signal.addEventListener('abort', () => r({ done: true, value: undefined }), { once: true }),
          ),
      }),
    });
    const p = streamSse(res2 as unknown as ServerResponse, idle, { signal: server.signal, keepaliveMs: 10 });
    await new Promise((r) => setTimeout(r, 50));
    server.abort();
    assert.equal(await p, 'aborted');
    assert.ok(res2.chunks.includes(': keepalive\n\n'), 'keepalive comments while idle');
    assert.equal(res2.writableEnded, true);
  });
});

/** Just enough of ServerResponse for streamSse. */
class FakeResponse extends EventEmitter {
  chunks: string[] = [];
  headers: Record<string, string> = {};
  full = false;
  writableEnded = false;
  writableFinished = false;
  destroyed = false;
  get writableNeedDrain(): boolean {
    return this.full;
  }
  writeHead(_status: number, headers: Record<string, string>): this {
    this.headers = headers;
    return this;
  }
  flushHeaders(): void {}
  write(chunk: string): boolean {
    this.chunks.push(chunk);
    return !this.full;
  }
  end(): void {
    this.writableEnded = true;
  }
  close(): void {
    this.destroyed = true;
    this.emit('close');
  }
}
