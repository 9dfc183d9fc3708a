// The WebSocket frames take what the HTTP bodies take (both derive from the schemas
// in src/core/wire): each field a `run` frame gained by that is checked here to reach
// the task — isolation, grace_ms and the idempotency key of a task run; max_tokens and
// temperature of a thread run — and a wrong value of each is refused naming its path.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import WebSocket from 'ws';
import { builtinTasks } from '../src/tasks/index.ts';
import { deaf } from './fixtures/hard-tasks.ts';
import { api, startOnTempDb } from './helpers/server.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frames are whatever JSON the server sent
type Frame = any;

/** One socket that records every frame. */
async function openSocket(
  url: string,
): Promise<{ send(f: unknown): void; waitFor(p: (f: Frame) => boolean): Promise<Frame>; close(): void }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/api/ws`);
  const frames: Frame[] = [];
  let wake: (() => void) | null = null;
  ws.on('message', (d) => {
    frames.push(JSON.parse(String(d)));
    wake?.();
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return {
    send: (f) => ws.send(JSON.stringify(f)),
    async waitFor(pred) {
      const end = Date.now() + 30_000;
      for (;;) {
        const f = frames.find(pred);
        if (f !== undefined) return f;
        if (Date.now() > end) throw new Error(`no matching frame; got ${JSON.stringify(frames.slice(-5))}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
    },
    close: () => ws.close(),
  };
}

const terminal = (id: string) => (f: Frame) =>
  f.type === 'event' && f.task_id === id && ['task.completed', 'task.failed', 'task.cancelled'].includes(f.event);

describe('WebSocket run frames take the HTTP fields', () => {
  let url: string;
  let close: () => Promise<void>;
  const logs: Array<Record<string, unknown>> = [];

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line));
        cb();
      },
    });
    const started = await startOnTempDb('leash-ws-wire-', pino({ level: 'info' }, sink), {
      tasks: [...builtinTasks, deaf],
    });
    url = started.server.url;
    close = started.close;
  });
  after(() => close?.());

  it('task.grace_ms reaches the task: an inline handler deaf to its cancel is detached after that grace', async () => {
    const c = await openSocket(url);
    c.send({ type: 'run', request_id: 'g', task: { type: 'deaf', input: {}, grace_ms: 50 } });
    const ack = await c.waitFor((f) => f.request_id === 'g');
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    await c.waitFor((f) => f.type === 'event' && f.task_id === ack.task_id && f.event === 'output.delta');
    c.send({ type: 'cancel', request_id: 'gc', task_id: ack.task_id });
    const end = await c.waitFor(terminal(ack.task_id));
    assert.equal(end.event, 'task.cancelled');
    assert.equal(end.data.detached, true);
    // deaf's own grace is 300 ms: the line names the one the frame gave.
    const line = logs.find((l) => l.task_id === ack.task_id && l.grace_ms !== undefined);
    assert.equal(line?.grace_ms, 50, JSON.stringify(line));
    c.close();
  });

  it('task.isolation reaches the task: the same deaf handler in a child process is killed, not detached', async () => {
    const c = await openSocket(url);
    c.send({ type: 'run', request_id: 'p', task: { type: 'deaf', input: {}, isolation: 'process', grace_ms: 100 } });
    const ack = await c.waitFor((f) => f.request_id === 'p');
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const pidLine = await c.waitFor(
      (f) => f.type === 'event' && f.task_id === ack.task_id && f.event === 'output.delta',
    );
    assert.notEqual(Number(/pid (\d+)/.exec(pidLine.data.text)?.[1]), process.pid, 'it ran in another process');
    c.send({ type: 'cancel', request_id: 'pc', task_id: ack.task_id });
    const end = await c.waitFor(terminal(ack.task_id));
    assert.equal(end.event, 'task.cancelled');
    assert.equal(end.data.detached, undefined, 'killed, not detached');
    c.close();
  });

  it('task.idempotency_key: the same key gives the same task, another key another one', async () => {
    const c = await openSocket(url);
    const task = {
      type: 'generate',
      input: { prompt: 'hi', model: 'simulated?tps=0&tokens=3' },
      idempotency_key: 'k-1',
    };
    c.send({ type: 'run', request_id: 'i1', task });
    const a = await c.waitFor((f) => f.request_id === 'i1');
    c.send({ type: 'run', request_id: 'i2', task });
    const b = await c.waitFor((f) => f.request_id === 'i2');
    c.send({ type: 'run', request_id: 'i3', task: { ...task, idempotency_key: 'k-2' } });
    const d = await c.waitFor((f) => f.request_id === 'i3');
    assert.equal(a.type, 'ack', JSON.stringify(a));
    assert.equal(b.task_id, a.task_id);
    assert.notEqual(d.task_id, a.task_id);
    // The HTTP header names the same key space.
    const r = await api(url, 'POST', '/api/tasks', {
      body: { type: task.type, input: task.input },
      headers: { 'idempotency-key': 'k-1' },
    });
    assert.equal(r.body.id, a.task_id);
    c.close();
  });

  it('thread run max_tokens and temperature reach the chat task', async () => {
    const thread = (await api(url, 'POST', '/api/threads', { body: {} })).body.id;
    const c = await openSocket(url);
    c.send({
      type: 'run',
      request_id: 't',
      thread_id: thread,
      content: 'hi',
      model: 'simulated:echo?tps=0',
      max_tokens: 7,
      temperature: 0.5,
    });
    const ack = await c.waitFor((f) => f.request_id === 't');
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    const t = (await api(url, 'GET', `/api/tasks/${ack.task_id}`)).body;
    assert.equal(t.input.max_tokens, 7);
    assert.equal(t.input.temperature, 0.5);
    c.close();
  });

  it('a wrong value of each new field is refused naming its path', async () => {
    const c = await openSocket(url);
    const thread = (await api(url, 'POST', '/api/threads', { body: {} })).body.id;
    const cases: Array<[unknown, string]> = [
      [{ type: 'run', request_id: 'b1', task: { type: 'deaf', isolation: 'thread' } }, 'task.isolation'],
      [{ type: 'run', request_id: 'b2', task: { type: 'deaf', grace_ms: -1 } }, 'task.grace_ms'],
      [{ type: 'run', request_id: 'b3', task: { type: 'deaf', idempotency_key: 'has space' } }, 'task.idempotency_key'],
      [{ type: 'run', request_id: 'b4', thread_id: thread, content: 'x', max_tokens: 0 }, 'max_tokens'],
      [{ type: 'run', request_id: 'b5', thread_id: thread, content: 'x', temperature: 3 }, 'temperature'],
    ];
    for (const [frame, path] of cases) {
      c.send(frame);
      const rid = (frame as { request_id: string }).request_id;
      const e = await c.waitFor((f) => f.request_id === rid);
      assert.equal(e.type, 'error', JSON.stringify(e));
      assert.equal(e.error.code, 'invalid_request');
      assert.ok(
        e.error.details.some((d: Frame) => d.path === path),
        `${path} in ${JSON.stringify(e.error.details)}`,
      );
    }
    c.close();
  });
});
