// Remote workers (SPEC §6, docs/workers.md): a real Python worker process (the SDK in
// clients/python) against a real `leash serve`, and protocol-level attacks with a raw
// WebSocket worker.

/* eslint-disable @typescript-eslint/no-explicit-any -- the tests read whatever JSON came back */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { RawWorker, startPyWorker, waitForMarker, type PyWorker } from './helpers/python-worker.ts';

// Longer than the accept time below, so an assignment nobody accepts times out as not accepted first.
const LEASE_MS = 3000;
const KEYS = 'key-alice:alice,key-bob:bob';

let dir: string;
let server: ServeProcess;
const workers: PyWorker[] = [];
const raws: RawWorker[] = [];

async function api(path: string, init: { method?: string; body?: unknown; key?: string } = {}): Promise<any> {
  const res = await fetch(server.url + path, {
    method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'),
    headers: {
      authorization: `Bearer ${init.key ?? 'key-alice'}`,
      ...(init.body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function create(type: string, input: unknown, key = 'key-alice'): Promise<string> {
  const r = await api('/api/tasks', { body: { type, input }, key });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body.id as string;
}

/**
 * Until the server has the worker's accept of the task's attempt. The handler may run (and
 * write its marker) before the accept it sent has arrived: a worker killed in between never
 * accepted, and its task is given to another worker instead of being lost with it.
 */
async function waitAccepted(taskId: string, key = 'key-alice'): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const listed = await api('/api/workers', { key });
    const runs = listed.body.data.flatMap((w: any) => w.running);
    if (runs.some((r: any) => r.task_id === taskId && r.accepted)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`task ${taskId} was never accepted`);
}

async function waitEnd(id: string, key = 'key-alice', timeoutS = 10): Promise<any> {
  const r = await api(`/api/tasks/${id}/wait?timeout_s=${timeoutS}`, { key });
  return r.body;
}

async function py(env: Record<string, string> = {}, key = 'key-alice', url = server.url): Promise<PyWorker> {
  const w = await startPyWorker(url, key, env);
  workers.push(w);
  assert.ok(w.id, `worker did not connect:\n${w.output()}`);
  return w;
}

function raw(key = 'key-alice'): RawWorker {
  const r = new RawWorker(server.url, key);
  raws.push(r);
  return r;
}

/** The SSE stream of a task, read to its terminal event. */
async function sse(id: string): Promise<Array<{ event: string; data: any }>> {
  const res = await fetch(`${server.url}/api/tasks/${id}/events`, { headers: { authorization: 'Bearer key-alice' } });
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => b.includes('event: '))
    .map((b) => ({
      event: /event: (.*)/.exec(b)![1]!,
      data: JSON.parse(/data: (.*)/.exec(b)![1]!),
    }));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'leash-workers-'));
  server = await startServeProcess('workers', {
    LEASH_DB: join(dir, 'leash.db'),
    LEASH_API_KEYS: KEYS,
    LEASH_WORKER_LEASE_MS: String(LEASE_MS),
    LEASH_WORKER_PING_MS: '300',
    // Long enough that a Python worker on a loaded machine accepts in time; the accept-timeout test waits it out.
    LEASH_WORKER_ACCEPT_MS: '2500',
    LEASH_WORKER_TYPES: 'py.echo,py.sleepy,py.blocking,py.fail,raw.t,other.t',
  });
});

// Each test's workers go with it, passed or failed: a worker left over from a failed test
// would take the next test's tasks and fail it too.
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
  for (const r of raws.splice(0)) r.close();
  // …and until the server has seen them go: a closing worker still has free slots there.
  if (server === undefined) return;
  for (const key of ['key-alice', 'key-bob']) {
    for (let i = 0; i < 250; i++) {
      const listed = await api('/api/workers', { key });
      if (!listed.body.data.some((w: { connected: boolean }) => w.connected)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
});

after(async () => {
  for (const r of raws) r.close();
  await Promise.all(workers.map((w) => w.stop()));
  server.proc.kill('SIGKILL');
  await server.exited;
  await rm(dir, { recursive: true, force: true });
});

describe('a Python worker runs leash tasks', () => {
  it('progress, output and the result reach an SSE reader', async () => {
    const w = await py();
    const id = await create('py.echo', { parts: ['alpha ', 'beta'], seqs: true });
    const events = await sse(id);
    const types = events.map((e) => e.event);
    assert.deepEqual(types.at(-1), 'task.completed');
    assert.ok(
      events.some((e) => e.event === 'task.progress' && e.data.progress === 20 && e.data.message === 'starting'),
    );
    const text = events
      .filter((e) => e.event === 'output.delta')
      .map((e) => e.data.text)
      .join('');
    assert.equal(text, 'alpha beta');
    const { seqs, ...result } = events.at(-1)!.data.result;
    assert.deepEqual(result, { echo: ['alpha ', 'beta'], resume_state: null });
    // Each `await ctx.progress / ctx.emit` returned the seq its event has for an SSE reader.
    const seqOf = (pred: (e: any) => boolean): number => events.find(pred)!.data.seq;
    const deltaWith = (text: string): number => seqOf((e) => e.event === 'output.delta' && e.data.text.includes(text));
    assert.deepEqual(seqs, [
      seqOf((e) => e.event === 'task.progress' && e.data.progress === 20),
      deltaWith('alpha'),
      deltaWith('beta'),
      seqOf((e) => e.event === 'task.progress' && e.data.progress === 90),
    ]);
    // Seqs have no gaps: every event the worker sent was applied once.
    assert.deepEqual(
      events.map((e) => e.data.seq),
      events.map((_, i) => i + 1),
    );
    const listed = await api('/api/workers');
    assert.equal(listed.status, 200);
    assert.ok(listed.body.data.some((x: any) => x.id === w.id && x.types.includes('py.echo') && x.slots === 4));
    const metrics = await (
      await fetch(`${server.url}/metrics`, { headers: { authorization: 'Bearer key-alice' } })
    ).text();
    assert.match(metrics, /^leash_workers_connected [1-9]/m);
    assert.match(metrics, /^leash_worker_slots [1-9]/m);
    await w.stop();
  });

  it('a handler error fails the task with its message', async () => {
    const w = await py();
    const id = await create('py.fail', { why: 'nope' });
    const t = await waitEnd(id);
    assert.equal(t.status, 'failed');
    assert.equal(t.error.code, 'handler_error');
    assert.match(t.error.message, /ValueError: bad input: nope/);
    await w.stop();
  });

  it('cancel raises CancelledError in an async handler at once, with its reason', async () => {
    const w = await py();
    const started = join(dir, 'async-started');
    const marker = join(dir, 'async-cancelled');
    const id = await create('py.sleepy', { started, marker });
    await waitForMarker(started);
    const asked = Date.now();
    const c = await api(`/api/tasks/${id}/cancel`, { method: 'POST' });
    assert.equal(c.status, 202);
    const m = await waitForMarker(marker);
    assert.equal(m.kind, 'CancelledError');
    assert.equal(m.reason, 'user');
    assert.equal(m.event, true, 'ctx.cancelled is set too');
    const ms = (m.at as number) * 1000 - asked;
    assert.ok(ms < 1000, `CancelledError ${ms} ms after the cancel was asked`);
    const t = await waitEnd(id);
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.reason, 'user');
    await w.stop();
  });

  it('cancel sets ctx.cancelled in a sync handler running in a thread', async () => {
    const w = await py();
    const started = join(dir, 'sync-started');
    const marker = join(dir, 'sync-cancelled');
    const id = await create('py.blocking', { started, marker });
    await waitForMarker(started);
    await api(`/api/tasks/${id}/cancel`, { method: 'POST' });
    const m = await waitForMarker(marker);
    assert.equal(m.kind, 'event');
    assert.equal(m.reason, 'user');
    const t = await waitEnd(id);
    assert.equal(t.status, 'cancelled');
    await w.stop();
  });

  it('SIGKILL of the worker: its task fails worker_lost within the lease + 1 s', async () => {
    const w = await py();
    const started = join(dir, 'kill-started');
    const id = await create('py.sleepy', { started });
    await waitForMarker(started);
    await waitAccepted(id);
    const killed = Date.now();
    w.proc.kill('SIGKILL');
    const t = await waitEnd(id, 'key-alice', 10);
    const took = Date.now() - killed;
    assert.equal(t.status, 'failed');
    assert.equal(t.error.code, 'worker_lost');
    assert.ok(took <= LEASE_MS + 1000, `recovered after ${took} ms`);
  });

  it('SIGKILL after a checkpoint: the task resumes from it on another worker', async () => {
    const w1 = await py();
    const started = join(dir, 'resume-started');
    const id = await create('py.sleepy', { started, checkpoint: { page: 3 }, steps: 50 });
    await waitForMarker(started);
    // The checkpoint is applied before the kill (the handler awaits its ack before sleeping).
    for (let i = 0; i < 100; i++) {
      const t = (await api(`/api/tasks/${id}`)).body;
      if (t.progress === 10) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    w1.proc.kill('SIGKILL');
    await w1.exited;
    const w2 = await py();
    const t = await waitEnd(id, 'key-alice', 15);
    assert.equal(t.status, 'completed', JSON.stringify(t));
    assert.deepEqual(t.result, { slept: true, resume_state: { page: 3 } });
    await w2.stop();
  });

  it('SIGTERM drains the worker: its running task completes, new ones wait for another worker', async () => {
    const w = await py({ WORKER_RUN_FOREVER: '1' });
    const started = join(dir, 'drain-started');
    const id = await create('py.sleepy', { started, steps: 80 });
    await waitForMarker(started);
    w.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    const next = await create('py.echo', {});
    const t = await waitEnd(id, 'key-alice', 10);
    assert.equal(t.status, 'completed', JSON.stringify(t));
    assert.equal(await w.exited, 0, w.output());
    assert.match(w.output(), /drained/);
    assert.equal((await api(`/api/tasks/${next}`)).body.status, 'queued', 'the draining worker took nothing new');
    const other = await py();
    assert.equal((await waitEnd(next)).status, 'completed');
    await other.stop();
  });

  it('a reconnecting worker keeps its running attempts (no second run)', async () => {
    // A TCP proxy between worker and server whose connections the test cuts.
    const target = new URL(server.url);
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(target.port), target.hostname);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const port = (proxy.address() as net.AddressInfo).port;
    const w = await py({}, 'key-alice', `http://127.0.0.1:${port}`);
    const started = join(dir, 'reconnect-started');
    const id = await create('py.sleepy', { started, steps: 150 });
    await waitForMarker(started);
    for (const s of sockets) s.destroy();
    sockets.clear();
    // The worker is back on a new connection, with the attempt it kept.
    let back = false;
    for (let i = 0; i < 100 && !back; i++) {
      const list = (await api('/api/workers')).body.data as any[];
      back = list.some((x) => x.id !== w.id && x.connected && x.running.some((r: any) => r.task_id === id));
      if (!back) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(back, 'the attempt moved to the reconnected worker');
    const t = await waitEnd(id, 'key-alice', 15);
    assert.equal(t.status, 'completed', JSON.stringify(t) + w.output());
    const events = await sse(id);
    assert.equal(events.filter((e) => e.event === 'task.started').length, 1);
    await w.stop();
    proxy.close();
  });
});

describe('the worker protocol refuses what it must', () => {
  it('a write with a stale fence or from another worker is refused, and that worker is told to cancel', async () => {
    const a = raw();
    await a.opened;
    a.send({ type: 'hello', types: ['raw.t'], slots: 1 });
    await a.next((f) => f.type === 'welcome');
    const id = await create('raw.t', { n: 1 });
    const assign = await a.next((f) => f.type === 'assign');
    assert.equal((assign.task as any).id, id);
    const attempt = assign.attempt as string;
    const fence = assign.fence as number;
    a.send({ type: 'accept', attempt, fence });
    // Stale fence.
    a.send({ type: 'event', id: 'x1', attempt, fence: fence + 1, kind: 'output', text: 'forged' });
    const err = await a.next((f) => f.type === 'error' && f.id === 'x1');
    assert.equal((err.error as any).code, 'fenced');
    await a.next((f) => f.type === 'cancel' && f.attempt === attempt && f.reason === 'fenced');
    // Another worker of the same owner writing to this attempt.
    const b = raw();
    await b.opened;
    b.send({ type: 'hello', types: ['raw.t'], slots: 1 });
    await b.next((f) => f.type === 'welcome');
    b.send({ type: 'finish', id: 'y1', attempt, fence, result: { forged: true } });
    const err2 = await b.next((f) => f.type === 'error' && f.id === 'y1');
    assert.equal((err2.error as any).code, 'fenced');
    // The real worker's writes still count; a retried event is applied once, and its
    // ack repeats the seq the first one got (the one an SSE reader sees).
    a.send({ type: 'event', id: 'ok1', attempt, fence, kind: 'output', text: 'real' });
    a.send({ type: 'event', id: 'ok1', attempt, fence, kind: 'output', text: 'real' });
    const first = await a.next((f) => f.type === 'ack' && f.id === 'ok1' && f.duplicate === undefined);
    const again = await a.next((f) => f.type === 'ack' && f.id === 'ok1' && f.duplicate === true);
    assert.equal(typeof first.seq, 'number', JSON.stringify(first));
    assert.equal(again.seq, first.seq);
    a.send({ type: 'event', id: 'p1', attempt, fence, kind: 'progress', progress: 50, message: 'half' });
    const p1 = await a.next((f) => f.type === 'ack' && f.id === 'p1');
    assert.equal(p1.seq, (first.seq as number) + 1);
    a.send({ type: 'event', id: 'p1', attempt, fence, kind: 'progress', progress: 50, message: 'half' });
    const p1again = await a.next((f) => f.type === 'ack' && f.id === 'p1' && f.duplicate === true);
    assert.equal(p1again.seq, p1.seq);
    a.send({ type: 'event', id: 'c1', attempt, fence, kind: 'checkpoint', state: { at: 1 } });
    const c1 = await a.next((f) => f.type === 'ack' && f.id === 'c1');
    assert.equal(c1.seq, p1.seq, 'a checkpoint covers the events up to the last one');
    // Output sent right before the finish: its delta is appended as the task ends, and its
    // ack (with that seq) still comes before the finish's.
    a.send({ type: 'event', id: 'o2', attempt, fence, kind: 'output', text: '!' });
    a.send({ type: 'finish', id: 'fin', attempt, fence, result: { ok: 1 } });
    const fin = await a.next((f) => f.type === 'ack' && f.id === 'fin');
    const o2 = await a.next((f) => f.type === 'ack' && f.id === 'o2');
    assert.ok(a.frames.indexOf(o2) < a.frames.indexOf(fin), 'event acks before the finish ack');
    assert.equal(typeof o2.seq, 'number');
    const t = await waitEnd(id);
    assert.equal(t.status, 'completed');
    assert.deepEqual(t.result, { ok: 1 });
    assert.equal(t.output_text, 'real!');
    const events = await sse(id);
    assert.equal(events.find((e) => e.event === 'output.delta')!.data.seq, first.seq);
    assert.equal(events.filter((e) => e.event === 'output.delta').length, 2, 'the retry was not applied again');
    assert.equal(events.find((e) => e.event === 'output.delta' && e.data.text === '!')!.data.seq, o2.seq);
    assert.equal(events.find((e) => e.event === 'task.progress')!.data.seq, p1.seq);
    a.close();
    b.close();
  });

  it('bad frames get an error frame and the socket stays open', async () => {
    const a = raw();
    await a.opened;
    for (const bad of [
      'not json',
      '{"type":"nope"}',
      '{"type":"hello","types":["BAD TYPE"],"slots":1}',
      '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
    ]) {
      const before = a.frames.length;
      a.send(bad);
      const e = await a.next((f) => f.type === 'error', 3000, before);
      assert.ok(['invalid_request', 'invalid_json'].includes((e.error as any).code), JSON.stringify(e));
    }
    a.send({ type: 'event', id: 'z', attempt: 'att_x', fence: 1, kind: 'output', text: 'x' });
    await a.next((f) => f.type === 'error' && (f.error as any).message.includes('hello'));
    a.send({ type: 'ping' });
    await a.next((f) => f.type === 'pong');
    a.close();
  });

  it("a worker with another owner's key sees none of its tasks; its own worker does", async () => {
    const bob = raw('key-bob');
    await bob.opened;
    bob.send({ type: 'hello', types: ['other.t'], slots: 4 });
    await bob.next((f) => f.type === 'welcome');
    const id = await create('other.t', { secret: 'alice only' }, 'key-alice');
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(bob.frames.filter((f) => f.type === 'assign').length, 0, JSON.stringify(bob.frames));
    // No worker of alice's serves it: the task stays queued (not claimed to wait somewhere).
    assert.equal((await api(`/api/tasks/${id}`)).body.status, 'queued');
    const listed = await api('/api/workers', { key: 'key-alice' });
    assert.ok(!listed.body.data.some((x: any) => x.owner === 'bob'), 'alice does not see bob’s workers');
    const alice = raw('key-alice');
    await alice.opened;
    alice.send({ type: 'hello', types: ['other.t'], slots: 1 });
    const assign = await alice.next((f) => f.type === 'assign');
    assert.equal((assign.task as any).id, id);
    assert.equal(bob.frames.filter((f) => f.type === 'assign').length, 0);
    // Cancel a task its worker has accepted: pushed to that worker, acknowledged.
    alice.send({ type: 'accept', attempt: assign.attempt, fence: assign.fence });
    await new Promise((r) => setTimeout(r, 50));
    await api(`/api/tasks/${id}/cancel`, { method: 'POST' });
    await alice.next((f) => f.type === 'cancel' && f.attempt === assign.attempt && f.reason === 'user');
    alice.send({ type: 'cancel_ack', attempt: assign.attempt });
    alice.send({
      type: 'finish',
      id: 'f',
      attempt: assign.attempt,
      fence: assign.fence,
      error: { code: 'cancelled', message: 'cancelled', cancelled: true },
    });
    assert.equal((await waitEnd(id)).status, 'cancelled');
    bob.close();
    alice.close();
  });

  it('the connect endpoint needs a key; the SDK names a refused key and a wrong URL', async () => {
    await assert.rejects(new RawWorker(server.url).opened, /HTTP 401/);
    await assert.rejects(new RawWorker(server.url, 'wrong').opened, /HTTP 401/);
    const refused = await startPyWorker(server.url, 'wrong');
    assert.equal(await refused.exited, 3);
    assert.match(refused.output(), /error AuthError unauthorized/);
    const nowhere = await startPyWorker('http://127.0.0.1:1', 'key-alice');
    assert.equal(await nowhere.exited, 3);
    assert.match(nowhere.output(), /error ConnectError unreachable/);
  });

  it('a worker may not serve a type the server serves itself', async () => {
    const a = raw();
    await a.opened;
    a.send({ type: 'hello', types: ['generate'], slots: 1 });
    const e = await a.next((f) => f.type === 'error');
    assert.equal((e.error as any).code, 'type_conflict');
    assert.equal((await a.closed).code, 4409);
  });

  it('a worker deaf to its cancel is detached after the grace; its late finish frees the slot', async () => {
    const a = raw();
    await a.opened;
    a.send({ type: 'hello', types: ['raw.t'], slots: 1 });
    const welcome = await a.next((f) => f.type === 'welcome');
    const r = await api('/api/tasks', { body: { type: 'raw.t', input: {}, grace_ms: 200 } });
    const id = r.body.id as string;
    const assign = await a.next((f) => f.type === 'assign');
    a.send({ type: 'accept', attempt: assign.attempt, fence: assign.fence });
    await new Promise((res) => setTimeout(res, 50));
    await api(`/api/tasks/${id}/cancel`, { method: 'POST' });
    await a.next((f) => f.type === 'cancel' && f.attempt === assign.attempt);
    const t = await waitEnd(id);
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.detached, true);
    const mine = async (): Promise<any> =>
      ((await api('/api/workers')).body.data as any[]).find((x) => x.id === welcome.worker_id);
    assert.equal((await mine()).running.length, 1, 'the slot is still taken while the worker runs it');
    a.send({ type: 'finish', id: 'late', attempt: assign.attempt, fence: assign.fence, result: { late: true } });
    await a.next((f) => f.type === 'ack' && f.id === 'late');
    assert.equal((await mine()).running.length, 0);
    assert.equal((await waitEnd(id)).status, 'cancelled');
    a.close();
  });

  it('a cancel that beats the accept still waits for the worker to stop (its handler may be running)', async () => {
    const a = raw();
    await a.opened;
    a.send({ type: 'hello', types: ['raw.t'], slots: 1 });
    await a.next((f) => f.type === 'welcome');
    const id = await create('raw.t', { n: 3 });
    const assign = await a.next((f) => f.type === 'assign');
    await api(`/api/tasks/${id}/cancel`, { method: 'POST' });
    await a.next((f) => f.type === 'cancel' && f.attempt === assign.attempt);
    assert.equal((await api(`/api/tasks/${id}`)).body.status, 'cancelling', 'not ended while the handler may run');
    // The accept that crossed the cancel is still this worker's; its finish ends the task.
    a.send({ type: 'accept', attempt: assign.attempt, fence: assign.fence });
    a.send({ type: 'cancel_ack', attempt: assign.attempt });
    a.send({ type: 'finish', id: 'f', attempt: assign.attempt, fence: assign.fence, error: { message: 'cancelled' } });
    await a.next((f) => f.type === 'ack' && f.id === 'f');
    assert.equal((await waitEnd(id)).status, 'cancelled');
    a.close();
  });

  it('a cancel asked while the worker is away is pushed again when it reconnects with the attempt', async () => {
    const a = raw();
    await a.opened;
    a.send({ type: 'hello', types: ['raw.t'], slots: 1 });
    await a.next((f) => f.type === 'welcome');
    const id = await create('raw.t', { n: 4 });
    const assign = await a.next((f) => f.type === 'assign');
    a.send({ type: 'accept', attempt: assign.attempt, fence: assign.fence });
    await new Promise((r) => setTimeout(r, 50));
    a.close();
    await a.closed;
    await api(`/api/tasks/${id}/cancel`, { method: 'POST' });
    assert.equal((await api(`/api/tasks/${id}`)).body.status, 'cancelling');
    // Back within the lease, listing what it still runs: it keeps it and hears the cancel.
    const b = raw();
    await b.opened;
    b.send({ type: 'hello', types: ['raw.t'], slots: 1, running: [{ attempt: assign.attempt, fence: assign.fence }] });
    const welcome = await b.next((f) => f.type === 'welcome');
    assert.deepEqual(welcome.kept, [assign.attempt]);
    await b.next((f) => f.type === 'cancel' && f.attempt === assign.attempt && f.reason === 'user');
    // Not acknowledged: a second reconnect hears it again.
    b.close();
    await b.closed;
    const c = raw();
    await c.opened;
    c.send({ type: 'hello', types: ['raw.t'], slots: 1, running: [{ attempt: assign.attempt, fence: assign.fence }] });
    await c.next((f) => f.type === 'cancel' && f.attempt === assign.attempt);
    c.send({ type: 'cancel_ack', attempt: assign.attempt });
    c.send({ type: 'finish', id: 'f', attempt: assign.attempt, fence: assign.fence, error: { message: 'stopped' } });
    assert.equal((await waitEnd(id)).status, 'cancelled');
    // An attempt the server does not know is answered with a cancel.
    const d = raw();
    await d.opened;
    d.send({ type: 'hello', types: ['raw.t'], slots: 1, running: [{ attempt: 'att_made_up', fence: 1 }] });
    const w2 = await d.next((f) => f.type === 'welcome');
    assert.deepEqual(w2.kept, []);
    await d.next((f) => f.type === 'cancel' && f.attempt === 'att_made_up' && f.reason === 'unknown_attempt');
    c.close();
    d.close();
  });

  it('an assignment not accepted in time goes to another worker; the first is told to drop it', async () => {
    const slow = raw();
    await slow.opened;
    slow.send({ type: 'hello', types: ['raw.t'], slots: 1 });
    await slow.next((f) => f.type === 'welcome');
    const id = await create('raw.t', { n: 5 });
    const first = await slow.next((f) => f.type === 'assign');
    const other = raw();
    await other.opened;
    other.send({ type: 'hello', types: ['raw.t'], slots: 1 });
    await other.next((f) => f.type === 'welcome');
    // accept_ms is 2500 here.
    await slow.next((f) => f.type === 'cancel' && f.attempt === first.attempt && f.reason === 'not_accepted', 6000);
    const second = await other.next((f) => f.type === 'assign', 6000);
    assert.equal((second.task as any).id, id);
    assert.ok((second.fence as number) > (first.fence as number), 'a new fence');
    // The late accept and finish of the first attempt are refused.
    slow.send({ type: 'finish', id: 'late', attempt: first.attempt, fence: first.fence, result: { stale: true } });
    await slow.next((f) => f.type === 'error' && f.id === 'late' && (f.error as any).code === 'fenced');
    other.send({ type: 'accept', attempt: second.attempt, fence: second.fence });
    other.send({ type: 'finish', id: 'ok', attempt: second.attempt, fence: second.fence, result: { fresh: true } });
    const t = await waitEnd(id);
    assert.deepEqual(t.result, { fresh: true });
    slow.close();
    other.close();
  });

  it('a task cancelled before any worker took it is never assigned', async () => {
    const id = await create('raw.t', { n: 2 });
    assert.equal((await api(`/api/tasks/${id}`)).body.status, 'queued');
    const c = await api(`/api/tasks/${id}/cancel`, { method: 'POST' });
    assert.ok([200, 202].includes(c.status));
    assert.equal((await waitEnd(id)).status, 'cancelled');
    const a = raw();
    await a.opened;
    a.send({ type: 'hello', types: ['raw.t'], slots: 1 });
    await a.next((f) => f.type === 'welcome');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(a.frames.filter((f) => f.type === 'assign').length, 0);
    a.close();
  });
});

describe('the connect endpoint on a server without keys', () => {
  it('takes loopback non-browser clients, refuses cross-site browsers and foreign Hosts', async () => {
    const d = await mkdtemp(join(tmpdir(), 'leash-workers-keyless-'));
    const keyless = await startServeProcess('workers-keyless', { LEASH_DB: join(d, 'leash.db') });
    try {
      const url = keyless.url.replace(/^http/, 'ws') + '/api/workers/connect';
      const status = (headers: Record<string, string>): Promise<number> =>
        new Promise((resolve) => {
          const ws = new WebSocket(url, { headers });
          ws.once('open', () => {
            ws.terminate();
            resolve(101);
          });
          ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
          ws.once('error', () => resolve(-1));
        });
      assert.equal(await status({}), 101);
      assert.equal(await status({ origin: 'https://evil.example' }), 403);
      assert.equal(await status({ host: 'evil.example' }), 403);
      // And the Python SDK works there without a key.
      const w = await startPyWorker(keyless.url, '');
      assert.ok(w.id, w.output());
      await w.stop();
    } finally {
      keyless.proc.kill('SIGKILL');
      await keyless.exited;
      await rm(d, { recursive: true, force: true });
    }
  });
});

describe('the server shutting down', () => {
  it('SIGTERM of leash serve pushes cancel (reason shutdown) into the running Python handler first', async () => {
    const d = await mkdtemp(join(tmpdir(), 'leash-workers-stop-'));
    const db = join(d, 'leash.db');
    // No grace: running work is cancelled at once (the default lets it finish for 10 s first).
    const s = await startServeProcess('workers-stop', {
      LEASH_DB: db,
      LEASH_WORKER_TYPES: 'py.sleepy',
      LEASH_SHUTDOWN_GRACE_MS: '0',
    });
    try {
      const w = await startPyWorker(s.url, '');
      workers.push(w);
      const started = join(d, 'started');
      const marker = join(d, 'cancelled');
      const r = await fetch(`${s.url}/api/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'py.sleepy', input: { started, marker } }),
      });
      const id = ((await r.json()) as { id: string }).id;
      await waitForMarker(started);
      s.proc.kill('SIGTERM');
      assert.equal(await s.exited, 0, s.stderr());
      const m = await waitForMarker(marker);
      assert.equal(m.kind, 'CancelledError');
      assert.equal(m.reason, 'shutdown');
      // The task ended cancelled in the database before the server exited.
      const again = await startServeProcess('workers-stop-2', { LEASH_DB: db });
      try {
        const t = (await (await fetch(`${again.url}/api/tasks/${id}`)).json()) as { status: string };
        assert.equal(t.status, 'cancelled');
      } finally {
        again.proc.kill('SIGKILL');
        await again.exited;
      }
    } finally {
      if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
      await s.exited;
      await rm(d, { recursive: true, force: true });
    }
  });
});
