// The client SDK against a real server: every method, the typed errors carrying
// the server's codes, abort signals, and event streams that survive connections
// being cut mid-stream (by a TCP proxy the test controls, and by the server)
// without a duplicate or a gap.

import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  AuthError,
  ConflictError,
  LeashApiError,
  LeashClient,
  LeashConnectionError,
  NotFoundError,
  RateLimitError,
  ValidationError,
  type TaskStreamEvent,
} from '../src/client/index.ts';
import { unusedPort } from './helpers/fake-upstream.ts';
import { eventually, startTestServer, type TestServer } from './helpers/server.ts';

const SLOW = 'simulated?tps=60&tokens=240'; // ~4 s: long enough to act on mid-stream
const FAST = 'simulated?tps=0&tokens=20';
const ECHO = 'simulated:echo?tps=0';

/** A TCP proxy that records each connection's request head and can cut every connection at once. */
interface CutProxy {
  url: string;
  heads: string[];
  cutAll(): void;
  close(): Promise<void>;
}

async function startCutProxy(target: string): Promise<CutProxy> {
  const { hostname, port } = new URL(target);
  const pairs = new Set<[Socket, Socket]>();
  const heads: string[] = [];
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    let head = '';
    client.on('data', (b) => {
      if (head.length < 4096) {
        head += b.toString('latin1');
        if (head.includes('\r\n\r\n')) heads.push(head.slice(0, head.indexOf('\r\n\r\n')));
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: p } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${p}`,
    heads,
    cutAll() {
      for (const [c, u] of pairs) {
        // A hard cut, as a dropped network would: no FIN for the client to read as a clean end.
        c.resetAndDestroy();
        u.destroy();
      }
      pairs.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [c, u] of pairs) {
          c.destroy();
          u.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

/** Asserts seqs are after+1, after+2, … with no repeat and no hole, ending with a terminal event. */
function assertContiguous(events: TaskStreamEvent[], after = 0): void {
  assert.ok(events.length > 0, 'no events');
  events.forEach((e, i) => assert.equal(e.seq, after + i + 1, `event ${i} has seq ${e.seq}`));
  const last = events[events.length - 1]!;
  assert.match(last.type, /^task\.(completed|failed|cancelled)$/);
  assert.equal(events.filter((e) => /^task\.(completed|failed|cancelled)$/.test(e.type)).length, 1);
}

const textOf = (events: TaskStreamEvent[]): string =>
  events.map((e) => (e.type === 'output.delta' ? e.data.text : '')).join('');

describe('client SDK', () => {
  let s: TestServer;
  let client: LeashClient;

  before(async () => {
    s = await startTestServer({ model: 'simulated' });
    client = new LeashClient({ baseUrl: s.url, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  });
  after(async () => {
    await s.close();
  });

  it('health', async () => {
    assert.deepEqual(await client.health(), { status: 'ok' });
  });

  describe('tasks', () => {
    it('create → get → wait → delete, with an idempotency key', async () => {
      const key = `k-${Math.random()}`;
      const t = await client.tasks.create(
        { type: 'generate', input: { prompt: 'hi', model: FAST }, priority: 3 },
        { idempotencyKey: key },
      );
      assert.match(t.id, /^task_/);
      assert.equal(t.type, 'generate');
      assert.equal(t.priority, 3);
      const again = await client.tasks.create(
        { type: 'generate', input: { prompt: 'hi', model: FAST } },
        { idempotencyKey: key },
      );
      assert.equal(again.id, t.id, 'same key → same task');

      const done = await client.tasks.wait(t.id, { timeoutMs: 10_000 });
      assert.equal(done.status, 'completed');
      assert.ok(done.output_text.length > 0);
      const got = await client.tasks.get(t.id);
      assert.equal(got.status, 'completed');
      assert.ok(Array.isArray(got.recent_progress));

      await client.tasks.delete(t.id);
      await assert.rejects(client.tasks.get(t.id), (e: unknown) => {
        assert.ok(e instanceof NotFoundError);
        assert.ok(e instanceof LeashApiError);
        assert.equal(e.status, 404);
        assert.equal(e.code, 'not_found');
        assert.match(e.requestId ?? '', /\S/);
        return true;
      });
    });

    it('wait with a timeout returns the task as it is then', async () => {
      const t = await client.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } });
      const w = await client.tasks.wait(t.id, { timeoutMs: 200 });
      assert.equal(w.id, t.id);
      assert.ok(['queued', 'running'].includes(w.status), w.status);
      await client.tasks.cancel(t.id);
    });

    it('cancel: cancelling/cancelled, idempotent, 409 task_ended on a completed task, 409 task_active on delete', async () => {
      const t = await client.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } });
      await eventually(async () => (await client.tasks.get(t.id)).status === 'running');
      await assert.rejects(client.tasks.delete(t.id), (e: unknown) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.code, 'task_active');
        return true;
      });
      const c = await client.tasks.cancel(t.id, { reason: 'user' });
      assert.ok(['cancelling', 'cancelled'].includes(c.status), c.status);
      const ended = await client.tasks.wait(t.id, { timeoutMs: 10_000 });
      assert.equal(ended.status, 'cancelled');
      assert.equal(ended.cancel?.reason, 'user');
      assert.equal((await client.tasks.cancel(t.id)).status, 'cancelled', 'second cancel is a no-op');

      const done = await client.tasks.create({ type: 'generate', input: { prompt: 'x', model: FAST } });
      await client.tasks.wait(done.id);
      await assert.rejects(client.tasks.cancel(done.id), (e: unknown) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.status, 409);
        assert.equal(e.code, 'task_ended');
        assert.deepEqual(e.details, { status: 'completed' });
        return true;
      });
    });

    it('cancelMany cancels the active tasks matching the filter, and only those', async () => {
      const thread = await client.threads.create();
      const mine = await Promise.all(
        [1, 2, 3].map(() => client.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } })),
      );
      const other = await client.tasks.create({
        type: 'analyze',
        input: { document: 'doc '.repeat(100), model: SLOW },
      });
      const r = await client.tasks.cancelMany({ type: 'generate' });
      assert.equal(r.cancelled, r.ids.length);
      for (const t of mine) assert.ok(r.ids.includes(t.id), `${t.id} cancelled`);
      assert.ok(!r.ids.includes(other.id));
      for (const t of mine) assert.equal((await client.tasks.wait(t.id, { timeoutMs: 10_000 })).status, 'cancelled');
      assert.notEqual((await client.tasks.get(other.id)).status, 'cancelled');
      await client.tasks.cancel(other.id);
      const none = await client.tasks.cancelMany({ thread_id: thread.id });
      assert.deepEqual(none, { cancelled: 0, ids: [] });
    });

    it('list: first page by await, every item by for-await, every page by pages()', async () => {
      const type = 'generate';
      const created = [];
      for (let i = 0; i < 5; i++) {
        created.push(await client.tasks.create({ type, input: { prompt: `p${i}`, model: FAST } }));
      }
      await Promise.all(created.map((t) => client.tasks.wait(t.id)));
      const first = await client.tasks.list({ type, status: 'completed', limit: 2 });
      assert.equal(first.data.length, 2);
      assert.equal(typeof first.next_cursor, 'string');

      const ids: string[] = [];
      for await (const t of client.tasks.list({ type, status: ['completed'], limit: 2 })) {
        assert.equal(t.status, 'completed');
        ids.push(t.id);
      }
      assert.equal(new Set(ids).size, ids.length, 'no task twice across pages');
      for (const t of created) assert.ok(ids.includes(t.id), `${t.id} listed`);

      let pages = 0;
      let total = 0;
      for await (const p of client.tasks.list({ type, status: 'completed', limit: 2 }).pages()) {
        pages++;
        total += p.data.length;
        assert.ok(p.data.length <= 2);
      }
      assert.equal(total, ids.length);
      // A full last page may or may not be followed by an empty one.
      assert.ok(pages >= Math.ceil(total / 2) && pages <= Math.ceil(total / 2) + 1, `${pages} pages for ${total}`);
    });

    it('typed validation errors carry the server code and field details', async () => {
      await assert.rejects(client.tasks.create({ type: 'no_such_type', input: {} }), (e: unknown) => {
        assert.ok(e instanceof ValidationError);
        assert.equal(e.status, 400);
        assert.equal(e.code, 'unknown_task_type');
        return true;
      });
      await assert.rejects(
        client.tasks.create({ type: 'generate', input: { prompt: 'x' }, priority: 1000 }),
        (e: unknown) => {
          assert.ok(e instanceof ValidationError);
          assert.equal(e.code, 'invalid_request');
          assert.ok(Array.isArray(e.details));
          assert.ok(
            (e.details as Array<{ path: string }>).some((d) => d.path === 'priority'),
            JSON.stringify(e.details),
          );
          return true;
        },
      );
      await assert.rejects(
        client.tasks.create({ type: 'generate', input: { prompt: 'x' } }, { idempotencyKey: 'has space' }),
        ValidationError,
      );
    });

    it('events: the whole log in order, exactly once, ending with the terminal event', async () => {
      const t = await client.tasks.create({
        type: 'generate',
        input: { prompt: 'x', model: 'simulated?tps=500&tokens=40' },
      });
      const events: TaskStreamEvent[] = [];
      for await (const e of client.tasks.events(t.id)) events.push(e);
      assertContiguous(events);
      assert.equal(events[0]!.type, 'task.queued');
      assert.equal(events.at(-1)!.type, 'task.completed');
      assert.ok(events.every((e) => e.task_id === t.id));
      const final = await client.tasks.get(t.id);
      assert.equal(textOf(events), final.output_text);

      // `after` resumes: only the later events.
      const tail: TaskStreamEvent[] = [];
      for await (const e of client.tasks.events(t.id, { after: 5 })) tail.push(e);
      assertContiguous(tail, 5);
      assert.deepEqual(
        tail.map((e) => e.seq),
        events.slice(5).map((e) => e.seq),
      );
    });

    it('events of a missing task: NotFoundError, no retries', async () => {
      const it = client.tasks.events('task_missing')[Symbol.asyncIterator]();
      await assert.rejects(it.next(), NotFoundError);
    });

    it('createAndStream: create + follow, cancel from the stream handle', async () => {
      const st = await client.tasks.createAndStream({ type: 'generate', input: { prompt: 'x', model: SLOW } });
      const seen: TaskStreamEvent[] = [];
      for await (const e of st) {
        seen.push(e);
        if (e.type === 'output.delta' && seen.filter((x) => x.type === 'output.delta').length === 3) {
          await st.cancel('user');
        }
      }
      assertContiguous(seen);
      const last = seen.at(-1)!;
      assert.equal(last.type, 'task.cancelled');
      if (last.type === 'task.cancelled') {
        assert.equal(last.data.reason, 'user');
        assert.equal(last.data.output_text, textOf(seen), 'partial text kept and equal to what streamed');
      }
      const cancelling = seen.findIndex((e) => e.type === 'task.cancelling');
      if (cancelling >= 0)
        assert.ok(!seen.slice(cancelling).some((e) => e.type === 'output.delta'), 'no delta after cancelling');
    });
  });

  describe('dropped connections', () => {
    it('resumes after a proxy cuts the SSE socket mid-stream: no duplicates, no gaps', async () => {
      const proxy = await startCutProxy(s.url);
      try {
        const viaProxy = new LeashClient({ baseUrl: proxy.url, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
        const t = await viaProxy.tasks.create({
          type: 'generate',
          input: { prompt: 'x', model: 'simulated?tps=80&tokens=120' },
        });
        const events: TaskStreamEvent[] = [];
        const cutAt = new Set([8, 30, 60]);
        for await (const e of viaProxy.tasks.events(t.id)) {
          events.push(e);
          if (cutAt.has(e.seq)) proxy.cutAll();
        }
        assertContiguous(events);
        assert.equal(events.at(-1)!.type, 'task.completed');
        const final = await client.tasks.get(t.id);
        assert.equal(textOf(events), final.output_text, 'the streamed text is the whole answer, once');
        const eventRequests = proxy.heads.filter((h) => h.includes(`/api/tasks/${t.id}/events`));
        assert.ok(eventRequests.length >= 4, `reconnected (${eventRequests.length} requests)`);
        // Each reconnect resumed from the last event the client had read: the cut event, or
        // one just after it when the same read off the socket held both (so not always = cut).
        const resumedFrom = eventRequests.flatMap((h) => {
          const m = /^last-event-id: (\d+)$/im.exec(h);
          return m ? [Number(m[1])] : [];
        });
        const cuts = [...cutAt];
        for (const [i, seq] of cuts.entries()) {
          const next = cuts[i + 1] ?? Infinity;
          assert.ok(
            resumedFrom.some((r) => r >= seq && r < next),
            `a reconnect after the cut at ${seq} sent a Last-Event-ID in [${seq}, ${next}): ${resumedFrom.join(', ')}`,
          );
        }
      } finally {
        await proxy.close();
      }
    });

    it('resumes after the server closes every connection', async () => {
      const t = await client.tasks.create({
        type: 'generate',
        input: { prompt: 'x', model: 'simulated?tps=80&tokens=100' },
      });
      const events: TaskStreamEvent[] = [];
      let cuts = 0;
      for await (const e of client.tasks.events(t.id)) {
        events.push(e);
        if (e.type === 'output.delta' && (e.seq === 10 || e.seq === 50)) {
          s.server.app.server.closeAllConnections();
          cuts++;
        }
      }
      assert.equal(cuts, 2);
      assertContiguous(events);
      assert.equal(textOf(events), (await client.tasks.get(t.id)).output_text);
    });

    it('gives up with LeashConnectionError when the server stays unreachable', async () => {
      const port = await unusedPort();
      const dead = new LeashClient({
        baseUrl: `http://127.0.0.1:${port}`,
        reconnect: { maxRetries: 2, initialDelayMs: 5, maxDelayMs: 10 },
      });
      await assert.rejects(dead.health(), (e: unknown) => {
        assert.ok(e instanceof LeashConnectionError);
        assert.ok(e.cause !== undefined, 'keeps the network error as cause');
        return true;
      });
      const it = dead.tasks.events('task_x')[Symbol.asyncIterator]();
      await assert.rejects(it.next(), (e: unknown) => {
        assert.ok(e instanceof LeashConnectionError);
        assert.match(e.message, /3 times/);
        return true;
      });
    });
  });

  describe('abort signals', () => {
    it('an aborted call rejects with the signal reason (custom and default)', async () => {
      const t = await client.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } });
      const ac = new AbortController();
      const reason = new Error('enough waiting');
      setTimeout(() => ac.abort(reason), 50);
      await assert.rejects(client.tasks.wait(t.id, { signal: ac.signal }), (e: unknown) => e === reason);

      const ac2 = new AbortController();
      setTimeout(() => ac2.abort(), 50);
      await assert.rejects(client.tasks.wait(t.id, { signal: ac2.signal }), { name: 'AbortError' });

      // Already aborted: rejects before any request.
      await assert.rejects(client.tasks.get(t.id, { signal: AbortSignal.abort(reason) }), (e: unknown) => e === reason);
      // The task was not affected by the client going away.
      assert.equal((await client.tasks.get(t.id)).status, 'running');
      await client.tasks.cancel(t.id);
    });

    it('aborting an event stream mid-way rejects the iteration with the reason', async () => {
      const t = await client.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } });
      const ac = new AbortController();
      const reason = new Error('stop reading');
      let deltas = 0;
      await assert.rejects(
        (async () => {
          for await (const e of client.tasks.events(t.id, { signal: ac.signal })) {
            if (e.type === 'output.delta' && ++deltas === 2) ac.abort(reason);
          }
        })(),
        (e: unknown) => e === reason,
      );
      assert.equal(deltas, 2);
      await client.tasks.cancel(t.id);
    });

    it('onDisconnect: cancel makes closing the stream a stop', async () => {
      const t = await client.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } });
      const ac = new AbortController();
      await assert.rejects(
        (async () => {
          for await (const e of client.tasks.events(t.id, { signal: ac.signal, onDisconnect: 'cancel' })) {
            if (e.type === 'output.delta') ac.abort();
          }
        })(),
        { name: 'AbortError' },
      );
      const ended = await client.tasks.wait(t.id, { timeoutMs: 10_000 });
      assert.equal(ended.status, 'cancelled');
      assert.equal(ended.cancel?.reason, 'disconnect');
    });
  });

  describe('threads', () => {
    it('create, get, list (pages), messages, run, runAndStream, delete', async () => {
      const th = await client.threads.create({ metadata: { title: 'sdk' } });
      assert.match(th.id, /^thread_/);
      assert.deepEqual(th.metadata, { title: 'sdk' });
      assert.equal((await client.threads.get(th.id)).status, 'idle');
      const th2 = await client.threads.create();

      const listed: string[] = [];
      for await (const t of client.threads.list({ limit: 1 })) listed.push(t.id);
      assert.ok(listed.includes(th.id) && listed.includes(th2.id));
      assert.equal(new Set(listed).size, listed.length);

      const run = await client.threads.run(th.id, { content: 'first question', model: ECHO });
      assert.match(run.user_message_id, /^msg_/);
      assert.match(run.assistant_message_id, /^msg_/);
      assert.equal(run.thread_id, th.id);
      await client.tasks.wait(run.id);

      const st = await client.threads.runAndStream(th.id, { content: 'second question', model: ECHO });
      assert.equal(st.task.type, 'chat');
      const events: TaskStreamEvent[] = [];
      for await (const e of st) events.push(e);
      assertContiguous(events);
      const text = textOf(events);
      assert.match(text, /first question/);
      assert.match(text, /second question/);

      const msgs = await client.threads.messages(th.id);
      assert.deepEqual(
        msgs.map((m) => [m.role, m.status]),
        [
          ['user', 'complete'],
          ['assistant', 'complete'],
          ['user', 'complete'],
          ['assistant', 'complete'],
        ],
      );
      assert.equal(msgs[3]!.content, text);
      assert.equal(msgs[3]!.id, st.task.assistant_message_id);

      await client.threads.delete(th2.id);
      await assert.rejects(client.threads.get(th2.id), NotFoundError);
      await assert.rejects(
        client.threads.messages(th2.id),
        (e: unknown) => e instanceof NotFoundError && e.code === 'not_found',
      );
    });

    it('multitask: reject → ConflictError thread_busy; interrupt keeps the cut turn; busy thread cannot be deleted', async () => {
      const th = await client.threads.create();
      const first = await client.threads.run(th.id, { content: 'long one', model: SLOW });
      await eventually(async () => (await client.tasks.get(first.id)).output_text.length > 0);
      await assert.rejects(client.threads.run(th.id, { content: 'again', multitask: 'reject' }), (e: unknown) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.code, 'thread_busy');
        return true;
      });
      await assert.rejects(
        client.threads.delete(th.id),
        (e: unknown) => e instanceof ConflictError && e.code === 'thread_busy',
      );

      const second = await client.threads.run(th.id, {
        content: 'what did I ask?',
        model: ECHO,
        multitask: 'interrupt',
      });
      assert.deepEqual(second.cancelled_task_ids, [first.id]);
      const done = await client.tasks.wait(second.id, { timeoutMs: 10_000 });
      assert.equal(done.status, 'completed');
      assert.match(done.output_text, /long one/);
      const cut = await client.tasks.get(first.id);
      assert.equal(cut.status, 'cancelled');
      assert.equal(cut.cancel?.reason, 'interrupted');
      const msgs = await client.threads.messages(th.id);
      assert.equal(msgs[1]!.status, 'cancelled');
      assert.equal(msgs[1]!.content, cut.output_text);
    });
  });
});

describe('client SDK: WebSocket', () => {
  let s: TestServer;
  let client: LeashClient;
  before(async () => {
    s = await startTestServer({ model: 'simulated', apiKeys: new Map([['k-ws', 'wsuser']]) });
    client = new LeashClient({ baseUrl: s.url, apiKey: 'k-ws', reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
  });
  after(async () => {
    await s.close();
  });

  it('runTask: ack with the task id, then every event once, in order', async () => {
    const sock = client.socket();
    try {
      await sock.ready();
      assert.ok((await sock.ping()) >= 0);
      const run = await sock.runTask({
        type: 'generate',
        input: { prompt: 'x', model: 'simulated?tps=400&tokens=30' },
      });
      assert.match(run.task_id, /^task_/);
      const events: TaskStreamEvent[] = [];
      for await (const e of run) events.push(e);
      assertContiguous(events);
      assert.equal(events.at(-1)!.type, 'task.completed');
      assert.equal(textOf(events), (await client.tasks.get(run.task_id)).output_text);
    } finally {
      sock.close();
    }
  });

  it('a run aborted before its ack is cancelled on the server by its request_id', async () => {
    const sock = client.socket();
    try {
      await sock.ready();
      const before = new Set((await client.tasks.list({ limit: 200 })).data.map((t) => t.id));
      const ac = new AbortController();
      const pending = sock.runTask({ type: 'generate', input: { prompt: 'x', model: SLOW } }, { signal: ac.signal });
      // Next turn of the loop: the run frame is on the wire, its ack not back (the server
      // shares this loop and has not even read it yet).
      setImmediate(() => ac.abort());
      await assert.rejects(pending, { name: 'AbortError' });
      const created = await eventually(async () =>
        (await client.tasks.list({ limit: 200 })).data.find((t) => !before.has(t.id)),
      );
      const ended = await client.tasks.wait(created.id, { timeoutMs: 10_000 });
      assert.equal(ended.status, 'cancelled', 'not left running');
      assert.equal(ended.cancel?.reason, 'user');
    } finally {
      sock.close();
    }
  });

  it('runThread + cancel: cancel_ack, then the stream ends with task.cancelled and the partial text', async () => {
    const sock = client.socket();
    try {
      const th = await client.threads.create();
      const run = await sock.runThread(th.id, { content: 'tell me', model: SLOW });
      assert.match(run.user_message_id ?? '', /^msg_/);
      assert.match(run.assistant_message_id ?? '', /^msg_/);
      const events: TaskStreamEvent[] = [];
      for await (const e of run) {
        events.push(e);
        if (e.type === 'output.delta' && events.filter((x) => x.type === 'output.delta').length === 3) {
          const ack = await sock.cancel(run.task_id, { reason: 'user' });
          assert.equal(ack.task_id, run.task_id);
          assert.ok(['cancelling', 'cancelled'].includes(ack.status ?? ''), String(ack.status));
        }
      }
      assertContiguous(events);
      const last = events.at(-1)!;
      assert.equal(last.type, 'task.cancelled');
      if (last.type === 'task.cancelled') assert.equal(last.data.output_text, textOf(events));
      // Typed errors from error frames: the task has ended, so a second stop is a no-op, and a completed one is a conflict.
      assert.equal((await sock.cancel(run.task_id)).status, 'cancelled');
      const done = await sock.runTask({ type: 'generate', input: { prompt: 'x', model: FAST } });
      for await (const _ of done) void _;
      await assert.rejects(sock.cancel(done.task_id), (e: unknown) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.code, 'task_ended');
        return true;
      });
      await assert.rejects(
        sock.runTask({ type: 'nope' }),
        (e: unknown) => e instanceof ValidationError && e.code === 'unknown_task_type',
      );
    } finally {
      sock.close();
    }
  });

  it('interrupt by thread, and subscribe with after', async () => {
    const sock = client.socket();
    try {
      const th = await client.threads.create();
      const run = await client.threads.run(th.id, { content: 'long', model: SLOW });
      await eventually(async () => (await client.tasks.get(run.id)).output_text.length > 0);
      const ack = await sock.interrupt({ thread_id: th.id });
      assert.equal(ack.task_id, run.id);
      const ended = await client.tasks.wait(run.id, { timeoutMs: 10_000 });
      assert.equal(ended.status, 'cancelled');
      assert.equal(ended.cancel?.reason, 'interrupted');

      const tail: TaskStreamEvent[] = [];
      for await (const e of sock.subscribe(run.id, { after: 2 })) tail.push(e);
      assertContiguous(tail, 2);
      await assert.rejects(
        (async () => {
          for await (const _ of sock.subscribe('task_missing')) void _;
        })(),
        NotFoundError,
      );
    } finally {
      sock.close();
    }
  });

  it('resumes after the connection is cut mid-stream: no duplicates, no gaps', async () => {
    const proxy = await startCutProxy(s.url);
    const sock = new LeashClient({ baseUrl: proxy.url, apiKey: 'k-ws', reconnect: { initialDelayMs: 20 } }).socket();
    try {
      const run = await sock.runTask({
        type: 'generate',
        input: { prompt: 'x', model: 'simulated?tps=80&tokens=120' },
      });
      const events: TaskStreamEvent[] = [];
      for await (const e of run) {
        events.push(e);
        if (e.seq === 10 || e.seq === 60) proxy.cutAll();
      }
      assertContiguous(events);
      assert.equal(events.at(-1)!.type, 'task.completed');
      assert.equal(textOf(events), (await client.tasks.get(run.task_id)).output_text);
      assert.ok(proxy.heads.filter((h) => h.startsWith('GET /api/ws')).length >= 3, 'reconnected twice');
    } finally {
      sock.close();
      await proxy.close();
    }
  });

  it('a wrong key cannot open the socket', async () => {
    const sock = new LeashClient({ baseUrl: s.url, apiKey: 'wrong', reconnect: { maxRetries: 0 } }).socket();
    await assert.rejects(sock.ready(), LeashConnectionError);
    sock.close();
  });
});

describe('client SDK: auth and limits', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({
      model: 'simulated',
      apiKeys: new Map([['k-alice', 'alice']]),
      runtime: { maxRunningPerOwner: 1, maxQueuedPerOwner: 1 },
    });
  });
  after(async () => {
    await s.close();
  });

  it('AuthError without or with a wrong key; the key can be set later', async () => {
    const c = new LeashClient({ baseUrl: s.url });
    await assert.rejects(c.threads.create(), (e: unknown) => {
      assert.ok(e instanceof AuthError);
      assert.equal(e.status, 401);
      assert.equal(e.code, 'unauthorized');
      return true;
    });
    c.apiKey = 'wrong';
    await assert.rejects(async () => await c.tasks.list(), AuthError);
    c.apiKey = 'k-alice';
    const page = await c.tasks.list();
    assert.deepEqual(page.data, []);
  });

  it('RateLimitError (queue_full) when the owner has too many queued tasks', async () => {
    const c = new LeashClient({ baseUrl: s.url, apiKey: 'k-alice' });
    const a = await c.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } });
    await eventually(async () => (await c.tasks.get(a.id)).status === 'running');
    const b = await c.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } });
    await assert.rejects(c.tasks.create({ type: 'generate', input: { prompt: 'x', model: SLOW } }), (e: unknown) => {
      assert.ok(e instanceof RateLimitError);
      assert.equal(e.status, 429);
      assert.equal(e.code, 'queue_full');
      assert.equal(e.retryAfter, null, 'the server sends no Retry-After for queue_full');
      return true;
    });
    const r = await c.tasks.cancelMany({});
    assert.deepEqual(new Set(r.ids), new Set([a.id, b.id]));
  });
});
