// The WebSocket API (SPEC §3) against a real server, spoken to with the `ws` client
// as any program would. Slow streams use the simulated model's token rate; the
// buffer and heartbeat limits are checked on a server built with tiny settings.

import { StreamCaps } from '../src/server/stream-caps.ts';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import WebSocket from 'ws';
import { z } from 'zod';
import { createModelRegistry } from '../src/models/registry.ts';
import { defineTask } from '../src/runtime/define-task.ts';
import { Runtime } from '../src/runtime/runtime.ts';
import { installAuth } from '../src/server/auth.ts';
import { installErrorHandling } from '../src/server/error-handler.ts';
import { registerWebSocket, WS_SUBPROTOCOL } from '../src/server/ws.ts';
import type { WebSocketOptions } from '../src/server/ws.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { builtinTasks } from '../src/tasks/index.ts';
import { Threads } from '../src/threads/threads.ts';
import { api, eventually, startTestServer, type TestServer } from './helpers/server.ts';

const SLOW = 'simulated?tps=50&tokens=200';
const FAST = 'simulated?tps=0&tokens=40';
const ECHO = 'simulated:echo?tps=0';
const TERMINAL = new Set(['task.completed', 'task.failed', 'task.cancelled']);

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frames are whatever JSON the server sent
type Frame = any;

/** A `ws` client that records every frame and lets a test wait for one. */
class Client {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: Array<() => void> = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, 'the server sends text frames only');
      this.frames.push(JSON.parse(String(data)));
      for (const w of this.#waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        for (const w of this.#waiters.splice(0)) w();
      });
    });
  }

  static open(
    url: string,
    opts: { key?: string; protocols?: string[]; query?: string; ws?: WebSocket.ClientOptions } = {},
  ): Promise<Client> {
    const headers: Record<string, string> = opts.key === undefined ? {} : { authorization: `Bearer ${opts.key}` };
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/api/ws${opts.query ?? ''}`, opts.protocols ?? [], {
      headers,
      ...opts.ws,
    });
    const c = new Client(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (req, res) => {
        // The server must hang up on a refused upgrade, not leave the socket open.
        const sock = req.socket;
        const socketClosed = new Promise<void>((done) =>
          sock === null || sock.destroyed ? done() : sock.once('close', () => done()),
        );
        reject(Object.assign(new Error('refused'), { status: res.statusCode, socketClosed }));
      });
      ws.once('error', reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The first frame (in arrival order, from the start) matching `pred`; waits for it. */
  async waitFor(pred: (f: Frame) => boolean, timeoutMs = 15_000): Promise<Frame> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find(pred);
      if (f !== undefined) return f;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('socket closed while waiting for a frame');
      const left = end - Date.now();
      if (left <= 0)
        throw new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Events of one task, in arrival order. */
  events(taskId: string): Frame[] {
    return this.frames.filter((f) => f.type === 'event' && f.task_id === taskId);
  }

  /** Waits for the task's terminal event and returns all its events. */
  async untilTerminal(taskId: string): Promise<Frame[]> {
    await this.waitFor((f) => f.type === 'event' && f.task_id === taskId && TERMINAL.has(f.event), 30_000);
    return this.events(taskId);
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close();
    return this.closed;
  }
}

/** Seqs are 1, 2, 3 … with no duplicate or gap, and exactly one terminal event, last. */
function assertCompleteLog(events: Frame[]): void {
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_, i) => i + 1),
  );
  assert.equal(events.filter((e) => TERMINAL.has(e.event)).length, 1);
  assert.ok(TERMINAL.has(events[events.length - 1].event));
}

async function runTask(
  c: Client,
  requestId: string,
  task: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Promise<string> {
  c.send({ type: 'run', request_id: requestId, task, ...extra });
  const ack = await c.waitFor((f) => f.request_id === requestId);
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  assert.match(ack.task_id, /^task_/);
  return ack.task_id;
}

describe('websocket /api/ws', () => {
  let s: TestServer;
  const KEY = 'k-alice';
  const call = (method: string, path: string, body?: unknown, key = KEY) =>
    api(s.url, method, path, { key, ...(body !== undefined && { body }) });
  const open = (opts: Parameters<typeof Client.open>[1] = {}) => Client.open(s.url, { key: KEY, ...opts });
  const clients: Client[] = [];
  const tracked = async (opts: Parameters<typeof Client.open>[1] = {}): Promise<Client> => {
    const c = await open(opts);
    clients.push(c);
    return c;
  };

  before(async () => {
    s = await startTestServer({
      apiKeys: new Map([
        [KEY, 'alice'],
        ['k-bob', 'bob'],
      ]),
    });
  });
  after(async () => {
    for (const c of clients) c.ws.terminate();
    await s.close();
  });

  async function newThread(key = KEY): Promise<string> {
    const r = await call('POST', '/api/threads', {}, key);
    assert.equal(r.status, 201);
    return r.body.id;
  }

  it('runs a task: ack, then every event in seq order up to the terminal one', async () => {
    const c = await tracked();
    const id = await runTask(c, 'r1', {
      type: 'generate',
      input: { prompt: 'hi', model: 'simulated?tps=500&tokens=30' },
    });
    const events = await c.untilTerminal(id);
    assertCompleteLog(events);
    assert.equal(events[0].event, 'task.queued');
    const done = events[events.length - 1];
    assert.equal(done.event, 'task.completed');
    const text = events
      .filter((e) => e.event === 'output.delta')
      .map((e) => e.data.text)
      .join('');
    assert.ok(text.length > 0);
    assert.equal(done.data.result.text, text);
    // The ack came before any event of its task.
    const ackAt = c.frames.findIndex((f) => f.type === 'ack' && f.request_id === 'r1');
    assert.ok(ackAt < c.frames.findIndex((f) => f.type === 'event' && f.task_id === id));
    await c.close();
  });

  it('accepts a numeric request_id and answers run errors with the HTTP codes', async () => {
    const c = await tracked();
    c.send({ type: 'run', request_id: 7, task: { type: 'nope', input: {} } });
    const e1 = await c.waitFor((f) => f.request_id === 7);
    assert.equal(e1.type, 'error');
    assert.equal(e1.error.code, 'unknown_task_type');
    c.send({ type: 'run', request_id: 'bad-input', task: { type: 'generate', input: { prompt: '' } } });
    const e2 = await c.waitFor((f) => f.request_id === 'bad-input');
    assert.equal(e2.error.code, 'invalid_request');
    assert.ok(e2.error.details.some((d: Frame) => d.path === 'input.prompt'));
    await c.close();
  });

  it('runs a message in a thread; the answer is saved', async () => {
    const thread = await newThread();
    const c = await tracked();
    c.send({ type: 'run', request_id: 't1', thread_id: thread, content: 'hello over ws', model: ECHO });
    const ack = await c.waitFor((f) => f.request_id === 't1');
    assert.equal(ack.type, 'ack');
    assert.equal(ack.thread_id, thread);
    assert.match(ack.user_message_id, /^msg_/);
    const events = await c.untilTerminal(ack.task_id);
    assertCompleteLog(events);
    assert.equal(events[events.length - 1].event, 'task.completed');
    assert.match(events[events.length - 1].data.result.text, /\[user\] hello over ws/);
    const msgs = await call('GET', `/api/threads/${thread}/messages`);
    assert.deepEqual(
      msgs.body.data.map((m: Frame) => [m.role, m.status]),
      [
        ['user', 'complete'],
        ['assistant', 'complete'],
      ],
    );
    await c.close();
  });

  it('interrupt mid-stream, then a new message: old run cancelled (interrupted) with no delta after cancelling; the new run sees the question', async () => {
    const thread = await newThread();
    const c = await tracked();
    c.send({ type: 'run', request_id: 'q1', thread_id: thread, content: 'first question, cut short', model: SLOW });
    const { task_id: oldId } = await c.waitFor((f) => f.request_id === 'q1');
    await c.waitFor((f) => f.type === 'event' && f.task_id === oldId && f.event === 'output.delta');

    c.send({ type: 'interrupt', request_id: 'i1', thread_id: thread });
    const ack = await c.waitFor((f) => f.request_id === 'i1');
    assert.equal(ack.type, 'cancel_ack', JSON.stringify(ack));
    assert.equal(ack.task_id, oldId);
    assert.ok(['cancelling', 'cancelled'].includes(ack.status), ack.status);

    c.send({ type: 'run', request_id: 'q2', thread_id: thread, content: 'second question', model: ECHO });
    const ack2 = await c.waitFor((f) => f.request_id === 'q2');
    assert.equal(ack2.type, 'ack', JSON.stringify(ack2));
    assert.notEqual(ack2.task_id, oldId);

    const old = await c.untilTerminal(oldId);
    assertCompleteLog(old);
    const last = old[old.length - 1];
    assert.equal(last.event, 'task.cancelled');
    assert.equal(last.data.reason, 'interrupted');
    const cancellingAt = old.findIndex((e) => e.event === 'task.cancelling');
    assert.ok(cancellingAt > 0);
    assert.equal(old.slice(cancellingAt).filter((e) => e.event === 'output.delta').length, 0);
    const partial = old
      .filter((e) => e.event === 'output.delta')
      .map((e) => e.data.text)
      .join('');
    assert.equal(last.data.output_text, partial);

    const fresh = await c.untilTerminal(ack2.task_id);
    assert.equal(fresh[fresh.length - 1].event, 'task.completed');
    const transcript: string = fresh[fresh.length - 1].data.result.text;
    assert.match(transcript, /\[user\] first question, cut short/);
    assert.match(transcript, /\[user\] second question/);
    assert.ok(transcript.indexOf('first question') < transcript.indexOf('second question'));
    await c.close();
  });

  it('interrupting an idle thread acks with task_id null; an unknown thread is not_found', async () => {
    const thread = await newThread();
    const c = await tracked();
    c.send({ type: 'interrupt', request_id: 'idle', thread_id: thread });
    const ack = await c.waitFor((f) => f.request_id === 'idle');
    assert.deepEqual(ack, { type: 'cancel_ack', request_id: 'idle', thread_id: thread, task_id: null, status: null });
    c.send({ type: 'interrupt', request_id: 'nothread', thread_id: 'thread_nope' });
    assert.equal((await c.waitFor((f) => f.request_id === 'nothread')).error.code, 'not_found');
    c.send({ type: 'interrupt', request_id: 'both', thread_id: thread, task_id: 'task_x' });
    assert.equal((await c.waitFor((f) => f.request_id === 'both')).error.code, 'invalid_request');
    await c.close();
  });

  it('interrupt by task_id cancels with reason interrupted', async () => {
    const c = await tracked();
    const id = await runTask(c, 'it', { type: 'generate', input: { prompt: 'x', model: SLOW } });
    await c.waitFor((f) => f.task_id === id && f.event === 'output.delta');
    c.send({ type: 'interrupt', request_id: 'it-x', task_id: id });
    const ack = await c.waitFor((f) => f.request_id === 'it-x');
    assert.equal(ack.type, 'cancel_ack');
    const events = await c.untilTerminal(id);
    assert.equal(events[events.length - 1].data.reason, 'interrupted');
    await c.close();
  });

  it('cancel: cancel_ack with the recorded status, then task.cancelled; again → cancelled; a completed task → task_ended', async () => {
    const c = await tracked();
    const id = await runTask(c, 'c1', { type: 'generate', input: { prompt: 'x', model: SLOW } });
    await c.waitFor((f) => f.task_id === id && f.event === 'output.delta');
    c.send({ type: 'cancel', request_id: 'c1-x', task_id: id });
    const ack = await c.waitFor((f) => f.request_id === 'c1-x');
    assert.equal(ack.type, 'cancel_ack');
    assert.equal(ack.task_id, id);
    assert.ok(['cancelling', 'cancelled'].includes(ack.status), ack.status);
    const events = await c.untilTerminal(id);
    assert.equal(events[events.length - 1].event, 'task.cancelled');
    assert.equal(events[events.length - 1].data.reason, 'user');
    // The stop is recorded: the task says so over HTTP too.
    assert.equal((await call('GET', `/api/tasks/${id}`)).body.status, 'cancelled');

    c.send({ type: 'cancel', request_id: 'c1-again', task_id: id, reason: 'batch' });
    const again = await c.waitFor((f) => f.request_id === 'c1-again');
    assert.equal(again.type, 'cancel_ack');
    assert.equal(again.status, 'cancelled');

    const done = await runTask(c, 'c2', { type: 'generate', input: { prompt: 'x', model: FAST } });
    await c.untilTerminal(done);
    c.send({ type: 'cancel', request_id: 'c2-x', task_id: done });
    const err = await c.waitFor((f) => f.request_id === 'c2-x');
    assert.equal(err.type, 'error');
    assert.equal(err.error.code, 'task_ended');
    assert.equal(err.error.details.status, 'completed');
    assert.equal(err.task_id, done);

    c.send({ type: 'cancel', request_id: 'c3', task_id: 'task_missing' });
    assert.equal((await c.waitFor((f) => f.request_id === 'c3')).error.code, 'not_found');
    c.send({ type: 'cancel', request_id: 'c4', task_id: done, reason: 'because' });
    assert.equal((await c.waitFor((f) => f.request_id === 'c4')).error.code, 'invalid_request');
    await c.close();
  });

  it('cancel by request_id, sent in one burst with its run (before the ack), stops that run', async () => {
    const c = await tracked();
    // One write: both frames are on the wire before any ack can come back.
    c.ws.send(
      JSON.stringify({
        type: 'run',
        request_id: 'rc1',
        task: { type: 'generate', input: { prompt: 'x', model: SLOW } },
      }),
    );
    c.ws.send(JSON.stringify({ type: 'cancel', request_id: 'rc1' }));
    const ack = await c.waitFor((f) => f.type === 'ack' && f.request_id === 'rc1');
    const cancelAck = await c.waitFor((f) => f.type === 'cancel_ack' && f.request_id === 'rc1');
    assert.equal(cancelAck.task_id, ack.task_id);
    assert.ok(['cancelling', 'cancelled'].includes(cancelAck.status), cancelAck.status);
    const events = await c.untilTerminal(ack.task_id);
    assertCompleteLog(events);
    assert.equal(events.at(-1).event, 'task.cancelled');
    assert.equal(events.at(-1).data.reason, 'user');
    assert.equal((await call('GET', `/api/tasks/${ack.task_id}`)).body.status, 'cancelled');

    // A run that would finish at once is still stopped: the cancel is taken as it arrives.
    for (let i = 0; i < 10; i++) {
      const rid = `fast-${i}`;
      c.ws.send(
        JSON.stringify({
          type: 'run',
          request_id: rid,
          task: { type: 'generate', input: { prompt: 'x', model: FAST } },
        }),
      );
      c.ws.send(JSON.stringify({ type: 'cancel', request_id: rid }));
      const a = await c.waitFor((f) => f.type === 'ack' && f.request_id === rid);
      const evs = await c.untilTerminal(a.task_id);
      assert.equal(evs.at(-1).event, 'task.cancelled', `run ${i} ran to completion`);
    }

    // Thread runs too (queued: their thread's runs start one at a time, never eagerly).
    for (let i = 0; i < 10; i++) {
      const rid = `fast-thread-${i}`;
      const th = await newThread();
      c.ws.send(JSON.stringify({ type: 'run', request_id: rid, thread_id: th, content: 'hi', model: ECHO }));
      c.ws.send(JSON.stringify({ type: 'cancel', request_id: rid }));
      const a = await c.waitFor((f) => f.type === 'ack' && f.request_id === rid);
      const evs = await c.untilTerminal(a.task_id);
      assert.equal(evs.at(-1).event, 'task.cancelled', `thread run ${i} ran to completion`);
    }

    // A thread run too, with a reason.
    const thread = await newThread();
    c.send({ type: 'run', request_id: 7, thread_id: thread, content: 'hello', model: SLOW });
    c.send({ type: 'cancel', request_id: 7, reason: 'interrupted' });
    const tack = await c.waitFor((f) => f.type === 'ack' && f.request_id === 7);
    const tevents = await c.untilTerminal(tack.task_id);
    assert.equal(tevents.at(-1).event, 'task.cancelled');
    assert.equal(tevents.at(-1).data.reason, 'interrupted');

    // Unknown request_ids (never used, or a run that failed) get an error frame.
    c.send({ type: 'cancel', request_id: 'nope' });
    const err = await c.waitFor((f) => f.request_id === 'nope');
    assert.equal(err.type, 'error');
    assert.equal(err.error.code, 'not_found');
    // A run that fails: the cancel sent with it is answered by the run's own error; later ones are not_found.
    c.send({ type: 'run', request_id: 'bad', task: { type: 'no-such-type', input: {} } });
    c.send({ type: 'cancel', request_id: 'bad' });
    await c.waitFor((f) => f.request_id === 'bad' && f.type === 'error' && f.error.code === 'unknown_task_type');
    c.send({ type: 'cancel', request_id: 'bad' });
    await c.waitFor((f) => f.request_id === 'bad' && f.type === 'error' && f.error.code === 'not_found');
    assert.equal(c.frames.filter((f) => f.request_id === 'bad').length, 2);
    // Another socket cannot cancel this one's runs by request_id.
    const other = await tracked();
    other.send({ type: 'cancel', request_id: 'rc1' });
    assert.equal((await other.waitFor((f) => f.request_id === 'rc1')).error.code, 'not_found');
    await c.close();
    await other.close();
  });

  it('subscribe with after resumes a stream on another socket without duplicates or gaps', async () => {
    const a = await tracked();
    const id = await runTask(a, 's1', {
      type: 'generate',
      input: { prompt: 'x', model: 'simulated?tps=100&tokens=80' },
    });
    await a.waitFor((f) => f.task_id === id && f.event === 'output.delta' && f.seq >= 5);
    await a.close();
    const seen = a.events(id);
    const lastSeen = seen[seen.length - 1].seq;
    assert.ok(!TERMINAL.has(seen[seen.length - 1].event), 'the stream was cut before its end');

    const b = await tracked();
    b.send({ type: 'subscribe', request_id: 'sub', task_id: id, after: lastSeen });
    const ack = await b.waitFor((f) => f.request_id === 'sub');
    assert.deepEqual(ack, { type: 'ack', request_id: 'sub', task_id: id });
    const rest = await b.untilTerminal(id);
    assert.equal(rest[0].seq, lastSeen + 1);
    assertCompleteLog([...seen, ...rest]);
    assert.equal(rest[rest.length - 1].event, 'task.completed', 'closing the socket did not stop the task');

    // A finished task replays from `after` and ends.
    b.send({ type: 'subscribe', task_id: id, after: rest[rest.length - 1].seq - 2 });
    await eventually(async () => b.events(id).length === rest.length + 2);
    assert.deepEqual(
      b
        .events(id)
        .slice(rest.length)
        .map((e) => e.seq),
      [rest[rest.length - 1].seq - 1, rest[rest.length - 1].seq],
    );
    await b.close();
  });

  it('unsubscribe stops the events of that task and nothing else', async () => {
    const c = await tracked();
    const id = await runTask(c, 'u1', { type: 'generate', input: { prompt: 'x', model: SLOW } });
    await c.waitFor((f) => f.task_id === id && f.event === 'output.delta');
    c.send({ type: 'unsubscribe', request_id: 'u1-x', task_id: id });
    await c.waitFor((f) => f.request_id === 'u1-x');
    const ackAt = c.frames.findIndex((f) => f.request_id === 'u1-x');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.frames.slice(ackAt).filter((f) => f.task_id === id && f.type === 'event').length, 0);
    const t = await call('GET', `/api/tasks/${id}`);
    assert.equal(t.body.status, 'running', 'unsubscribing is not a cancel');
    c.send({ type: 'ping', request_id: 'p' });
    assert.equal((await c.waitFor((f) => f.request_id === 'p')).type, 'pong');
    c.send({ type: 'cancel', task_id: id });
    await c.waitFor((f) => f.type === 'cancel_ack' && f.task_id === id);
    await c.close();
  });

  it('garbage frames each get an error frame, in order, and the socket keeps answering', async () => {
    const c = await tracked();
    c.send('{not json');
    c.send('[1,2,3]');
    c.send('"a string"');
    c.send({ type: 'launch', request_id: 'g1' });
    c.send({ request_id: 'g2' });
    c.send({ type: 'run', request_id: 'g3' });
    c.send({ type: 'run', task: { type: 'generate', input: { prompt: 'x' } } });
    c.send({ type: 'cancel', request_id: 'g5' });
    c.send({ type: 'subscribe', request_id: 'g6', task_id: 'task_x', after: -1 });
    c.send({ type: 'run', request_id: 'g7', task: { type: 'generate', input: { prompt: 'x' } }, extra: true });
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    c.ws.send(`{"type":"ping","x":${'['.repeat(10_000)}${']'.repeat(10_000)}}`); // deep nesting
    c.send({ type: 'ping', request_id: 'alive' });
    await c.waitFor((f) => f.request_id === 'alive');
    const codes = c.frames.map((f) => (f.type === 'error' ? f.error.code : f.type));
    assert.deepEqual(codes, [
      'invalid_frame',
      'invalid_frame',
      'invalid_frame',
      'invalid_frame',
      'invalid_frame',
      'invalid_request',
      'invalid_request',
      'not_found', // a cancel by a request_id no run of this socket had
      'invalid_request',
      'invalid_request',
      'invalid_frame',
      'invalid_frame',
      'pong',
    ]);
    assert.match(c.frames[11].error.message, /nests deeper than 128/);
    assert.equal(c.frames[3].request_id, 'g1', 'the request_id of a bad frame is echoed');
    assert.match(c.frames[3].error.message, /launch/);
    assert.deepEqual(c.frames[5].error.details.map((d: Frame) => d.path).sort(), ['content', 'thread_id']);
    assert.ok(c.frames[6].error.details.some((d: Frame) => d.path === 'request_id'));
    assert.ok(c.frames[9].error.details.some((d: Frame) => d.path === 'extra'));
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    await c.close();
  });

  it('a frame over the size limit closes the socket with 1009', async () => {
    const c = await tracked();
    c.send({ type: 'ping', pad: 'x'.repeat(1024 * 1024) });
    const { code } = await c.closed;
    assert.equal(code, 1009);
    assert.equal(c.frames.length, 0);
  });

  it('a plain GET is answered 426', async () => {
    const r = await call('GET', '/api/ws');
    assert.equal(r.status, 426);
    assert.equal(r.body.error.code, 'upgrade_required');
  });

  it("a malformed handshake or an upgrade elsewhere gets a JSON error, not ws's plain text", async () => {
    const raw = (path: string, extra = ''): Promise<string> =>
      new Promise((resolve) => {
        const u = new URL(s.url);
        const c = net.connect(Number(u.port), u.hostname, () =>
          c.write(
            `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${extra}\r\n`,
          ),
        );
        let b = '';
        c.on('data', (d) => (b += d));
        c.on('close', () => resolve(b));
        setTimeout(() => c.destroy(), 2000);
      });
    const noKey = await raw('/api/ws');
    assert.match(noKey, /^HTTP\/1\.1 400/);
    assert.match(noKey, /application\/json/);
    assert.match(noKey, /"code":"invalid_request".*Sec-WebSocket-Key/);
    const badVersion = await raw(
      '/api/ws',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n',
    );
    assert.match(badVersion, /"code":"invalid_request".*Sec-WebSocket-Version/);
    const t0 = Date.now();
    const badUrl = await raw('/%ff%fe');
    assert.match(badUrl, /^HTTP\/1\.1 400/);
    assert.match(badUrl, /application\/json/);
    assert.ok(Date.now() - t0 < 1500, 'the refused upgrade socket is closed, not left hanging');
    for (const path of ['/api/tasks', '*']) {
      const elsewhere = await raw(path, 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n');
      assert.match(elsewhere, /^HTTP\/1\.1 404/, path);
      assert.match(elsewhere, /"code":"not_found".*connect to \/api\/ws/, path);
    }
  });

  describe('auth', () => {
    it('refuses the upgrade with 401 without a key or with a wrong one', async () => {
      const refusals: Array<Promise<void>> = [];
      const refused = (e: Frame): boolean => {
        refusals.push(e.socketClosed);
        return e.status === 401;
      };
      await assert.rejects(Client.open(s.url), refused);
      await assert.rejects(Client.open(s.url, { key: 'wrong' }), refused);
      await assert.rejects(Client.open(s.url, { query: '?api_key=wrong' }), refused);
      await assert.rejects(Client.open(s.url, { protocols: [WS_SUBPROTOCOL, 'bearer.wrong'] }), refused);
      assert.equal(refusals.length, 4);
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5000).unref());
      assert.notEqual(await Promise.race([Promise.all(refusals), timeout]), 'timeout', 'the server hung up');
    });

    it('takes the key from ?api_key= or a bearer.<key> subprotocol (selecting leash.v1)', async () => {
      const q = await Client.open(s.url, { query: `?api_key=${KEY}` });
      clients.push(q);
      const p = await Client.open(s.url, { protocols: [WS_SUBPROTOCOL, `bearer.${KEY}`] });
      clients.push(p);
      assert.equal(p.ws.protocol, WS_SUBPROTOCOL);
      // Both act as alice: they see her task.
      const h = await tracked();
      const id = await runTask(h, 'own', { type: 'generate', input: { prompt: 'x', model: FAST } });
      await h.untilTerminal(id);
      for (const c of [q, p]) {
        c.send({ type: 'subscribe', request_id: 'mine', task_id: id });
        assert.equal((await c.waitFor((f) => f.request_id === 'mine')).type, 'ack');
        await c.untilTerminal(id);
        await c.close();
      }
      await h.close();
    });

    it("another owner's task or thread is not_found", async () => {
      const alice = await tracked();
      const bob = await tracked({ key: 'k-bob' });
      const id = await runTask(alice, 'a1', { type: 'generate', input: { prompt: 'x', model: SLOW } });
      const thread = await newThread();
      const tries: Frame[] = [
        { type: 'subscribe', request_id: 'b1', task_id: id },
        { type: 'cancel', request_id: 'b2', task_id: id },
        { type: 'interrupt', request_id: 'b3', task_id: id },
        { type: 'interrupt', request_id: 'b4', thread_id: thread },
        { type: 'run', request_id: 'b5', thread_id: thread, content: 'hi', model: FAST },
        { type: 'run', request_id: 'b6', task: { type: 'generate', input: { prompt: 'x' }, thread_id: thread } },
      ];
      for (const t of tries) bob.send(t);
      for (const t of tries) {
        const r = await bob.waitFor((f) => f.request_id === t.request_id);
        assert.equal(r.type, 'error', `${t.request_id}: ${JSON.stringify(r)}`);
        assert.equal(r.error.code, 'not_found', t.request_id);
      }
      assert.equal(bob.frames.filter((f) => f.type === 'event').length, 0);
      const t = await call('GET', `/api/tasks/${id}`);
      assert.equal(t.body.status, 'running');
      assert.equal((await call('GET', `/api/threads/${thread}/messages`)).body.data.length, 0);
      alice.send({ type: 'cancel', task_id: id });
      await alice.untilTerminal(id);
      await alice.close();
      await bob.close();
    });
  });

  describe('on_disconnect', () => {
    it('"cancel": closing the socket cancels the task with reason disconnect', async () => {
      const c = await tracked();
      const id = await runTask(c, 'd1', {
        type: 'generate',
        input: { prompt: 'x', model: SLOW },
        on_disconnect: 'cancel',
      });
      await c.waitFor((f) => f.task_id === id && f.event === 'output.delta');
      await c.close();
      const t = await eventually(async () => {
        const r = await call('GET', `/api/tasks/${id}`);
        return r.body.status === 'cancelled' ? r.body : null;
      });
      assert.equal(t.cancel.reason, 'disconnect');
    });

    it('"cancel" on a thread run, given at the top level', async () => {
      const thread = await newThread();
      const c = await tracked();
      c.send({ type: 'run', request_id: 'd2', thread_id: thread, content: 'q', model: SLOW, on_disconnect: 'cancel' });
      const { task_id: id } = await c.waitFor((f) => f.request_id === 'd2');
      await c.waitFor((f) => f.task_id === id && f.event === 'output.delta');
      c.ws.terminate();
      await c.closed;
      const t = await eventually(async () => {
        const r = await call('GET', `/api/tasks/${id}`);
        return r.body.status === 'cancelled' ? r.body : null;
      });
      assert.equal(t.cancel.reason, 'disconnect');
    });

    it('default "continue": the task outlives the socket, and other sockets\' tasks are untouched', async () => {
      const keep = await tracked();
      const other = await tracked();
      const a = await runTask(keep, 'k1', {
        type: 'generate',
        input: { prompt: 'x', model: 'simulated?tps=200&tokens=100' },
      });
      const b = await runTask(other, 'k2', {
        type: 'generate',
        input: { prompt: 'x', model: SLOW },
        on_disconnect: 'cancel',
      });
      await keep.waitFor((f) => f.task_id === a && f.event === 'output.delta');
      await keep.close();
      const t = await eventually(async () => {
        const r = await call('GET', `/api/tasks/${a}`);
        return ['completed', 'failed', 'cancelled'].includes(r.body.status) ? r.body : null;
      });
      assert.equal(t.status, 'completed');
      assert.equal((await call('GET', `/api/tasks/${b}`)).body.status, 'running');
      await other.close();
      await eventually(async () => (await call('GET', `/api/tasks/${b}`)).body.status === 'cancelled');
    });

    it('conflicting on_disconnect values are refused', async () => {
      const c = await tracked();
      c.send({
        type: 'run',
        request_id: 'x',
        task: { type: 'generate', input: { prompt: 'x' }, on_disconnect: 'cancel' },
        on_disconnect: 'continue',
      });
      assert.equal((await c.waitFor((f) => f.request_id === 'x')).error.code, 'invalid_request');
      await c.close();
    });
  });
});

// ── limits, on a server built with tiny settings ─────────────────────────────
const blob = defineTask({
  type: 'blob',
  input: z.object({ size: z.number().int().positive() }).strict(),
  async run(input) {
    return 'x'.repeat(input.size);
  },
});

interface SmallServer {
  url: string;
  app: FastifyInstance;
  runtime: Runtime;
  close(): Promise<void>;
}

async function startSmallServer(opts: WebSocketOptions): Promise<SmallServer> {
  const dir = await mkdtemp(join(tmpdir(), 'leash-ws-'));
  const store = SqliteStore.open(join(dir, 'leash.db'));
  await store.migrate();
  const logger = pino({ level: 'silent' });
  const runtime = new Runtime({
    store,
    models: createModelRegistry({ defaultModel: 'simulated' }),
    logger,
    tasks: [...builtinTasks, blob],
    maxRunningPerOwner: 64,
    shutdownGraceMs: 0,
  });
  await runtime.start();
  const app = Fastify({ loggerInstance: logger }) as unknown as FastifyInstance;
  installAuth(app, new Map());
  installErrorHandling(app);
  const closing = new AbortController();
  app.addHook('preClose', async () => closing.abort());
  registerWebSocket(
    app,
    { runtime, threads: new Threads(runtime), closing: closing.signal, streams: new StreamCaps(), rateCounter: null },
    opts,
  );
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    app,
    runtime,
    async close() {
      await runtime.stop({ graceMs: 0 });
      await app.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('websocket limits', () => {
  it('a client that does not read is closed with 1013 once its buffer passes the bound', async () => {
    const s = await startSmallServer({ maxBufferedBytes: 64 * 1024 });
    try {
      const c = await Client.open(s.url);
      c.ws.pause(); // reads nothing from now on; the kernel buffers fill, then the server's
      const N = 40;
      const SIZE = 1024 * 1024;
      for (let i = 0; i < N; i++)
        c.send({ type: 'run', request_id: `b${i}`, task: { type: 'blob', input: { size: SIZE } } });
      // Wait until the server gave up on the socket (it only closes it for being slow here).
      await eventually(
        async () => [...s.app.websocketServer.clients].every((w) => w.readyState !== WebSocket.OPEN),
        30_000,
      );
      c.ws.resume();
      const { code, reason } = await c.closed;
      assert.equal(code, 1013);
      assert.match(reason, /after=/);
      const results = c.frames.filter((f) => f.type === 'event' && f.event === 'task.completed');
      assert.ok(results.length < N, `only part of the ${N} MiB was sent (${results.length})`);
      // The tasks themselves were not cancelled: a slow reader is not a disconnect.
      const ids = c.frames.filter((f) => f.type === 'ack').map((f) => f.task_id);
      assert.ok(ids.length > 0);
      for (const id of ids) assert.equal((await s.runtime.wait(id, 'local', 10_000))?.status, 'completed');
    } finally {
      await s.close();
    }
  });

  it('protocol pings: a client that never answers is dropped, one that does stays', async () => {
    const s = await startSmallServer({ heartbeatMs: 50 });
    try {
      const mute = await Client.open(s.url, { ws: { autoPong: false } });
      const live = await Client.open(s.url);
      let pings = 0;
      live.ws.on('ping', () => pings++);
      const { code } = await mute.closed;
      assert.equal(code, 1006, 'terminated without a close frame');
      await eventually(async () => pings >= 4);
      assert.equal(live.ws.readyState, WebSocket.OPEN);
      live.send({ type: 'ping' });
      assert.deepEqual(await live.waitFor((f) => f.type === 'pong'), { type: 'pong' });
      await live.close();
    } finally {
      await s.close();
    }
  });

  it('a socket may follow only so many tasks; a run past the bound is refused before it starts', async () => {
    const s = await startSmallServer({ maxSubscriptions: 2 });
    try {
      const c = await Client.open(s.url);
      const a = await runTask(c, 'm0', { type: 'generate', input: { prompt: 'x', model: SLOW } });
      await runTask(c, 'm1', { type: 'generate', input: { prompt: 'x', model: SLOW } });
      c.send({ type: 'run', request_id: 'm2', task: { type: 'generate', input: { prompt: 'x', model: SLOW } } });
      assert.equal((await c.waitFor((f) => f.request_id === 'm2')).error.code, 'too_many_subscriptions');
      c.send({ type: 'subscribe', request_id: 'm3', task_id: a });
      assert.equal(
        (await c.waitFor((f) => f.request_id === 'm3')).type,
        'ack',
        'resubscribing to a followed task is fine',
      );
      assert.equal((await s.runtime.list({ owner: 'local' })).data.length, 2);
      c.send({ type: 'cancel', task_id: a });
      await c.untilTerminal(a);
      await runTask(c, 'm4', { type: 'generate', input: { prompt: 'x', model: SLOW } });
      c.ws.terminate();
    } finally {
      await s.close();
    }
  });

  it('server shutdown closes sockets with 1001', async () => {
    const s = await startSmallServer({});
    const c = await Client.open(s.url);
    const id = await runTask(c, 'sd', { type: 'generate', input: { prompt: 'x', model: SLOW } });
    await c.waitFor((f) => f.task_id === id && f.event === 'output.delta');
    await s.close();
    const { code } = await c.closed;
    assert.equal(code, 1001);
  });
});
