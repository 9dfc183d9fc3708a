// Owner isolation with two API keys (SPEC §5): for every route, bob naming alice's
// task, thread or response gets exactly the answer he gets for an id that does not
// exist (status and body, the id aside) — so nothing tells him it exists. Lists,
// filters, batch cancels, idempotency keys, queue limits, WebSocket frames and
// /metrics leak nothing of alice's; no key ever reaches a log line; and key lookup
// compares every key, whichever (or none) matches (timing: bench/key-compare.ts).

import assert from 'node:assert/strict';
import { timingSafeEqual } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { createKeyMatcher } from '../src/server/auth.ts';
import { api, eventually, readSse } from './helpers/server.ts';
import { startLoggedServer, type LoggedServer } from './reliability.helpers.ts';

// Distinctive so a leak into logs or answers is unmistakable.
const ALICE_KEY = 'sk-alice-5ecret-0f-alice';
const BOB_KEY = 'sk-bob-5ecret-0f-bob';
const WRONG_KEY = 'sk-wrong-5ecret-guess';
const KEYS = new Map([
  [ALICE_KEY, 'alice'],
  [BOB_KEY, 'bob'],
]);
const SLOW = 'simulated?tps=10&tokens=2000';

/** An id of the same shape as `id` that names nothing. */
const missingLike = (id: string): string => id.replace(/_[a-z0-9]+$/, (m) => '_' + 'z'.repeat(m.length - 1));

type Answer = { status: number; body: unknown };

async function call(
  url: string,
  method: string,
  path: string,
  key: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const r = await api(url, method, path, { key, headers, ...(body !== undefined && { body }) });
  return { status: r.status, body: r.body };
}

describe('isolation between owners', () => {
  let s: LoggedServer;
  const a = {} as { done: string; running: string; thread: string; runTask: string; response: string; userMsg: string };

  before(async () => {
    s = await startLoggedServer({
      apiKeys: KEYS,
      model: 'simulated?tps=0&tokens=8',
      level: 'trace', // every log line the server can write
      runtime: { maxRunningPerOwner: 2, maxQueuedPerOwner: 3 },
    });
    const done = await call(
      s.url,
      'POST',
      '/api/tasks',
      ALICE_KEY,
      { type: 'generate', input: { prompt: 'mine' } },
      { 'idempotency-key': 'shared-key' },
    );
    a.done = (done.body as { id: string }).id;
    const running = await call(s.url, 'POST', '/api/tasks', ALICE_KEY, {
      type: 'generate',
      input: { prompt: 'long', model: SLOW },
    });
    a.running = (running.body as { id: string }).id;
    const thread = await call(s.url, 'POST', '/api/threads', ALICE_KEY, { metadata: { topic: 'private' } });
    a.thread = (thread.body as { id: string }).id;
    const run = await call(s.url, 'POST', `/api/threads/${a.thread}/runs`, ALICE_KEY, {
      content: 'alice private question',
    });
    a.runTask = (run.body as { id: string }).id;
    const resp = await call(s.url, 'POST', '/v1/responses', ALICE_KEY, {
      model: 'simulated',
      input: 'alice response',
      background: true,
    });
    assert.equal(resp.status, 200, JSON.stringify(resp.body));
    a.response = (resp.body as { id: string }).id;
    await eventually(async () => {
      const t = await s.runtime.get(a.running, 'alice');
      return t?.status === 'running' && t.output_text.length > 0;
    });
    for (const id of [a.done, a.runTask])
      await eventually(async () => (await s.runtime.get(id, 'alice'))?.status === 'completed');
  });
  after(() => s.close());

  it('every route: bob naming alice’s id answers exactly like a missing id', async () => {
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/api/tasks/:task'],
      ['GET', '/api/tasks/:task/wait?timeout_s=0'],
      ['GET', '/api/tasks/:task/events'],
      ['GET', '/api/tasks/:task/events?after=1'],
      ['POST', '/api/tasks/:task/cancel', {}],
      ['POST', '/api/tasks/:task/cancel', { reason: 'user' }],
      ['DELETE', '/api/tasks/:task'],
      ['GET', '/api/tasks/:running'],
      ['GET', '/api/tasks/:running/events'],
      ['POST', '/api/tasks/:running/cancel', {}],
      ['DELETE', '/api/tasks/:running'],
      ['GET', '/api/threads/:thread'],
      ['GET', '/api/threads/:thread/messages'],
      ['POST', '/api/threads/:thread/runs', { content: 'bob was here' }],
      ['POST', '/api/threads/:thread/runs', { content: 'bob was here', multitask: 'rollback' }],
      ['DELETE', '/api/threads/:thread'],
      ['POST', '/api/tasks', { type: 'generate', input: { prompt: 'x' }, thread_id: ':thread' }],
      ['GET', '/v1/responses/:response'],
      ['GET', '/v1/responses/:response?stream=true'],
      ['POST', '/v1/responses/:response/cancel', {}],
      ['DELETE', '/v1/responses/:response'],
      ['POST', '/v1/responses', { model: 'simulated', input: 'hi', previous_response_id: ':response' }],
    ];
    const ids: Record<string, string> = { task: a.done, running: a.running, thread: a.thread, response: a.response };
    const fill = (x: string, m: Record<string, string>): string =>
      x.replace(/:(task|running|thread|response)\b/g, (_, k: string) => m[k]!);
    for (const [method, path, body] of routes) {
      const missing = Object.fromEntries(Object.entries(ids).map(([k, v]) => [k, missingLike(v)]));
      const b = body === undefined ? undefined : JSON.parse(fill(JSON.stringify(body), ids));
      const bm = body === undefined ? undefined : JSON.parse(fill(JSON.stringify(body), missing));
      const real = await call(s.url, method, fill(path, ids), BOB_KEY, b);
      const none = await call(s.url, method, fill(path, missing), BOB_KEY, bm);
      const norm = (ans: Answer, m: Record<string, string>): string =>
        Object.values(m).reduce((txt, id) => txt.replaceAll(id, '<id>'), JSON.stringify(ans));
      // /v1 answers a missing previous_response_id 400, as OpenAI does; everything else is 404.
      const expected = path.startsWith('/v1/responses') && method === 'POST' && !path.includes(':') ? 400 : 404;
      assert.equal(real.status, expected, `${method} ${path}: ${JSON.stringify(real)}`);
      assert.equal(norm(real, ids), norm(none, missing), `${method} ${path}: differs from a missing id`);
    }
    // Alice's things are untouched by all that.
    assert.equal((await s.runtime.get(a.running, 'alice'))?.status, 'running');
    const msgs = await call(s.url, 'GET', `/api/threads/${a.thread}/messages`, ALICE_KEY);
    const contents = (msgs.body as { data: Array<{ content: string }> }).data.map((m) => m.content);
    assert.equal(contents[0], 'alice private question');
    assert.ok(!contents.some((c) => c.includes('bob')));
    assert.equal((await call(s.url, 'GET', `/v1/responses/${a.response}`, ALICE_KEY)).status, 200);
  });

  it('lists, filters and batch cancels see only the caller’s own', async () => {
    const bobList = await call(s.url, 'GET', '/api/tasks?limit=200', BOB_KEY);
    const bobTaskIds = (bobList.body as { data: Array<{ id: string; owner: string }> }).data;
    assert.ok(bobTaskIds.every((t) => t.owner === 'bob'));
    for (const q of [`thread_id=${a.thread}`, 'status=running', 'status=completed', 'type=generate', 'type=chat']) {
      const r = await call(s.url, 'GET', `/api/tasks?${q}`, BOB_KEY);
      assert.ok(
        (r.body as { data: Array<{ owner: string }> }).data.every((t) => t.owner === 'bob'),
        q,
      );
    }
    const threads = await call(s.url, 'GET', '/api/threads', BOB_KEY);
    assert.deepEqual((threads.body as { data: unknown[] }).data, []);
    const batch = await call(s.url, 'POST', '/api/tasks/cancel', BOB_KEY, { status: ['running', 'queued'] });
    assert.equal(batch.status, 200);
    assert.ok(!(batch.body as { ids: string[] }).ids.includes(a.running));
    const byThread = await call(s.url, 'POST', '/api/tasks/cancel', BOB_KEY, { thread_id: a.thread });
    assert.deepEqual(byThread.body, { cancelled: 0, ids: [] });
    assert.equal((await s.runtime.get(a.running, 'alice'))?.status, 'running');
  });

  it('an Idempotency-Key used by alice gives bob a task of his own', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', {
      key: BOB_KEY,
      headers: { 'idempotency-key': 'shared-key' },
      body: { type: 'generate', input: { prompt: 'bob' } },
    });
    assert.equal(r.status, 202);
    assert.notEqual(r.body.id, a.done);
    assert.equal(r.body.owner, 'bob');
    assert.equal(r.headers.get('idempotent-replayed'), null);
  });

  it("queue limits count per owner: alice's full queue neither blocks bob nor shows in his answers", async () => {
    const mine: string[] = [];
    let full: Awaited<ReturnType<typeof call>> | null = null;
    for (let i = 0; i < 10 && full === null; i++) {
      const r = await call(s.url, 'POST', '/api/tasks', ALICE_KEY, {
        type: 'generate',
        input: { prompt: `q${i}`, model: SLOW },
      });
      if (r.status === 429) full = r;
      else mine.push((r.body as { id: string }).id);
    }
    assert.ok(full, 'alice reached her queue limit');
    assert.equal((full.body as { error: { code: string } }).error.code, 'queue_full');
    const bob = await call(s.url, 'POST', '/api/tasks', BOB_KEY, {
      type: 'generate',
      input: { prompt: 'bob still can' },
    });
    assert.equal(bob.status, 202);
    const cancel = await call(s.url, 'POST', '/api/tasks/cancel', ALICE_KEY, { status: ['queued', 'running'] });
    assert.ok((cancel.body as { cancelled: number }).cancelled >= mine.length);
  });

  it('WebSocket: bob cannot subscribe to, cancel, interrupt or run in alice’s things', async () => {
    const ws = new WebSocket(`${s.url.replace(/^http/, 'ws')}/api/ws?api_key=${BOB_KEY}`);
    const frames: Array<Record<string, unknown>> = [];
    ws.on('message', (d) => frames.push(JSON.parse(String(d))));
    await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
    const other = await call(s.url, 'POST', '/api/tasks', ALICE_KEY, {
      type: 'generate',
      input: { prompt: 'ws', model: SLOW },
    });
    const running = (other.body as { id: string }).id;
    const sent = [
      { type: 'subscribe', request_id: 's', task_id: running },
      { type: 'cancel', request_id: 'c', task_id: running },
      { type: 'interrupt', request_id: 'i', task_id: running },
      { type: 'interrupt', request_id: 'it', thread_id: a.thread },
      { type: 'run', request_id: 'r', thread_id: a.thread, content: 'bob' },
      { type: 'run', request_id: 'rt', task: { type: 'generate', input: { prompt: 'x' }, thread_id: a.thread } },
    ];
    for (const f of sent) ws.send(JSON.stringify(f));
    await eventually(async () => frames.filter((f) => f.type === 'error').length >= sent.length);
    for (const f of frames) {
      assert.equal(f.type, 'error', JSON.stringify(f));
      assert.equal((f.error as { code: string }).code, 'not_found');
    }
    ws.close();
    assert.equal((await s.runtime.get(running, 'alice'))?.status, 'running');
    await call(s.url, 'POST', `/api/tasks/${running}/cancel`, ALICE_KEY, {});
  });

  it('/metrics carries no owner, key, task or thread id', async () => {
    const m = await api(s.url, 'GET', '/metrics', { key: ALICE_KEY });
    assert.equal(m.status, 200);
    const text = String(m.body);
    for (const secret of ['alice', 'bob', ALICE_KEY, BOB_KEY, a.done, a.running, a.thread, a.runTask, a.response]) {
      assert.ok(!text.includes(secret), `/metrics mentions ${secret}`);
    }
    assert.match(text, /leash_/, 'metrics are there');
  });

  it("alice's own stream works while all that happened (the checks above were not vacuous)", async () => {
    const res = await fetch(`${s.url}/api/tasks/${a.done}/events`, {
      headers: { authorization: `Bearer ${ALICE_KEY}` },
    });
    const frames = await readSse(res);
    assert.equal(frames.at(-1)?.event, 'task.completed');
  });

  it('no API key — right, wrong, in a header or a query — is ever written to the log', async () => {
    await api(s.url, 'GET', '/api/tasks', { key: WRONG_KEY });
    await api(s.url, 'GET', '/api/tasks', { headers: { authorization: `Basic ${WRONG_KEY}` } });
    const ws = new WebSocket(`${s.url.replace(/^http/, 'ws')}/api/ws?api_key=${WRONG_KEY}`);
    await new Promise<void>(
      (resolve) => (ws.once('error', () => resolve()), ws.once('unexpected-response', () => resolve())),
    );
    ws.terminate();
    await call(s.url, 'POST', `/api/tasks/${a.running}/cancel`, ALICE_KEY, {});
    await eventually(async () => (await s.runtime.get(a.running, 'alice'))?.status === 'cancelled');
    assert.ok(s.logs.length > 50, `the server did log (${s.logs.length} lines)`);
    for (const secret of [ALICE_KEY, BOB_KEY, WRONG_KEY, '5ecret']) {
      const hits = s.logs.filter((l) => l.includes(secret));
      assert.deepEqual(hits, [], `a log line contains ${secret}`);
    }
  });
});

describe('key comparison', () => {
  // Constant time by construction (timing itself is measured by bench/key-compare.ts):
  // every lookup compares one fixed-size digest with every configured key, whatever
  // the presented key is and whichever key matches.
  it('compares a 32-byte digest with every key, all of them, whichever key matches or none', () => {
    const keys = new Map(
      Array.from({ length: 200 }, (_, i) => [`sk-${String(i).padStart(4, '0')}-${'k'.repeat(40)}`, `owner${i}`]),
    );
    const all = [...keys.keys()];
    const calls: Array<[number, number]> = [];
    const match = createKeyMatcher(keys, (x, y) => {
      calls.push([x.length, y.length]);
      return timingSafeEqual(x, y);
    });
    const first = all[0]!;
    const last = all[all.length - 1]!;
    const cases: Array<[string, string | null]> = [
      [first, 'owner0'],
      [last, 'owner199'],
      [first.slice(0, -1) + 'x', null],
      ['x', null],
      ['', null],
      ['y'.repeat(10_000), null],
    ];
    for (const [k, owner] of cases) {
      calls.length = 0;
      assert.equal(match(k), owner);
      assert.equal(calls.length, keys.size, `${k.slice(0, 12)}: ${calls.length} comparisons`);
      assert.ok(
        calls.every(([x, y]) => x === 32 && y === 32),
        'fixed-size digests only',
      );
    }
  });
});
