// Bearer auth, owner isolation (another owner's task is a 404 on every route),
// probes without a key, and metrics (behind a key) that carry no owner or task ids.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { api, eventually, startTestServer } from './helpers/server.ts';
import type { TestServer } from './helpers/server.ts';
import { createKeyMatcher, parseApiKeys } from '../src/server/auth.ts';
import { isLoopbackHost, startServer } from '../src/cli/serve.ts';

const ALICE = 'alice-key-0123456789';
const BOB = 'bob-key-9876543210';
const SLOW = { type: 'generate', input: { prompt: 'hi', model: 'simulated?tps=20&tokens=100000' } };

describe('auth', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ apiKeys: parseApiKeys(`${ALICE}:alice,${BOB}:bob`) });
  });
  after(() => s.close());

  it('401 unauthorized without a key, with a wrong key, or a malformed header', async () => {
    const cases: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${ALICE}x` },
      { authorization: `Bearer ${ALICE.slice(0, -1)}` },
      { authorization: ALICE },
      { authorization: `Basic ${ALICE}` },
      { authorization: 'Bearer' },
    ];
    for (const headers of cases) {
      for (const [method, path] of [
        ['GET', '/api/tasks'],
        ['POST', '/api/tasks'],
        ['GET', '/api/tasks/task_x'],
        ['GET', '/api/unknown'],
      ] as const) {
        const r = await api(s.url, method, path, { headers });
        assert.equal(r.status, 401, `${method} ${path} ${JSON.stringify(headers)}`);
        assert.equal(r.body.error.code, 'unauthorized');
        assert.equal(r.headers.get('www-authenticate'), 'Bearer');
        assert.ok(!JSON.stringify(r.body).includes(ALICE), 'the key is not echoed');
      }
    }
  });

  it('a valid key acts as its owner; the scheme is case-insensitive', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', {
      body: { type: 'generate', input: { prompt: 'x', model: 'simulated?tps=0&tokens=1' } },
      headers: { authorization: `bearer ${ALICE}` },
    });
    assert.equal(r.status, 202);
    assert.equal(r.body.owner, 'alice');
  });

  it('probes answer without a key; /metrics needs one unless made public', async () => {
    assert.deepEqual((await api(s.url, 'GET', '/healthz')).body, { status: 'ok' });
    const ready = await api(s.url, 'GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.body.status, 'ready');
    assert.equal((await api(s.url, 'GET', '/metrics')).status, 401);
    const m = await api(s.url, 'GET', '/metrics', { key: BOB });
    assert.equal(m.status, 200);
    assert.match(m.headers.get('content-type') ?? '', /^text\/plain/);
    const open = await startTestServer({ apiKeys: parseApiKeys(`${ALICE}:alice`), security: { metricsPublic: true } });
    try {
      assert.equal((await api(open.url, 'GET', '/metrics')).status, 200);
      assert.equal((await api(open.url, 'GET', '/api/tasks')).status, 401, 'only /metrics became public');
    } finally {
      await open.close();
    }
  });

  it("another owner's task is 404 on every route, and never in lists or batch cancels", async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { body: SLOW, key: ALICE })).body;
    assert.equal(t.owner, 'alice');
    const calls: Array<[string, string, unknown?]> = [
      ['GET', `/api/tasks/${t.id}`],
      ['POST', `/api/tasks/${t.id}/cancel`, {}],
      ['GET', `/api/tasks/${t.id}/events`],
      ['GET', `/api/tasks/${t.id}/wait?timeout_s=0`],
      ['DELETE', `/api/tasks/${t.id}`],
    ];
    for (const [method, path, body] of calls) {
      const r = await api(s.url, method, path, { key: BOB, ...(body !== undefined && { body }) });
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.deepEqual(r.body, { error: { code: 'not_found', message: r.body.error.message } });
      assert.ok(!JSON.stringify(r.body).includes('alice'));
    }
    const list = await api(s.url, 'GET', '/api/tasks', { key: BOB });
    assert.ok(!list.body.data.some((x: { id: string }) => x.id === t.id));
    const batch = await api(s.url, 'POST', '/api/tasks/cancel', { key: BOB, body: {} });
    assert.deepEqual(batch.body, { cancelled: 0, ids: [] });
    // Still running after all of Bob's attempts.
    assert.ok(
      ['queued', 'running'].includes((await api(s.url, 'GET', `/api/tasks/${t.id}`, { key: ALICE })).body.status),
    );

    // Bob's own work is his to stop; Alice's batch stops only hers.
    const b = (await api(s.url, 'POST', '/api/tasks', { body: SLOW, key: BOB })).body;
    const mine = await api(s.url, 'POST', '/api/tasks/cancel', { key: ALICE, body: {} });
    assert.deepEqual(mine.body.ids, [t.id]);
    assert.ok(
      ['queued', 'running'].includes((await api(s.url, 'GET', `/api/tasks/${b.id}`, { key: BOB })).body.status),
    );
    await api(s.url, 'POST', `/api/tasks/${b.id}/cancel`, { key: BOB });
    const listA = await api(s.url, 'GET', '/api/tasks', { key: ALICE });
    assert.ok(listA.body.data.every((x: { owner: string }) => x.owner === 'alice'));
  });

  it('metrics count tasks by status and type but carry no owner or task id', async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { body: SLOW, key: ALICE })).body;
    await eventually(
      async () => (await api(s.url, 'GET', `/api/tasks/${t.id}`, { key: ALICE })).body.status === 'running',
    );
    await api(s.url, 'POST', `/api/tasks/${t.id}/cancel`, { key: ALICE });
    await api(s.url, 'GET', `/api/tasks/${t.id}/wait?timeout_s=30`, { key: ALICE });

    const text: string = (await api(s.url, 'GET', '/metrics', { key: ALICE })).body;
    for (const name of [
      'leash_tasks{status="cancelled"}',
      'leash_tasks_running',
      'leash_queue_depth',
      'leash_tasks_started_total{type="generate"}',
      'leash_tasks_ended_total{type="generate",status="cancelled"}',
      'leash_pickup_seconds_bucket',
      'leash_cancel_latency_seconds_bucket{le="0.0005",isolation="inline",outcome="cooperative",reason="user"}',
      'leash_cancel_latency_seconds_bucket{le="30",isolation="inline",outcome="cooperative",reason="user"}',
      'leash_cancel_cleanup_seconds_bucket{le="30",reason="user"}',
      'leash_cancels_total{reason="user",stage="running"}',
      'leash_http_requests_total{method="GET",route="/api/tasks/:id",status="200"}',
      'process_cpu_seconds_total',
    ]) {
      assert.ok(text.includes(name), `metrics lack ${name}`);
    }
    const count =
      /^leash_cancel_latency_seconds_count\{isolation="inline",outcome="cooperative",reason="user"\} (\d+)/m.exec(text);
    assert.ok(count !== null && Number(count[1]) >= 1, 'a cancel latency was observed');
    assert.doesNotMatch(text, /alice|bob|owner=/);
    assert.doesNotMatch(text, /task_[0-9a-z]{20}/);
  });
});

describe('server without keys', () => {
  it('everything belongs to "local" and the server refuses a non-loopback host', async () => {
    const s = await startTestServer();
    try {
      const r = await api(s.url, 'POST', '/api/tasks', {
        body: { type: 'generate', input: { prompt: 'x', model: 'simulated?tps=0&tokens=1' } },
        key: 'whatever',
      });
      assert.equal(r.status, 202);
      assert.equal(r.body.owner, 'local');
    } finally {
      await s.close();
    }
    await assert.rejects(
      startServer({ host: '0.0.0.0', port: 0, db: ':memory:' }),
      (e: Error & { exitCode?: number }) => {
        assert.equal(e.exitCode, 2);
        assert.match(e.message, /LEASH_API_KEYS/);
        return true;
      },
    );
    assert.equal(isLoopbackHost('127.0.0.1'), true);
    assert.equal(isLoopbackHost('localhost'), true);
    assert.equal(isLoopbackHost('::1'), true);
    assert.equal(isLoopbackHost('[::1]'), true);
    assert.equal(isLoopbackHost('0.0.0.0'), false);
    assert.equal(isLoopbackHost('::'), false);
    assert.equal(isLoopbackHost('192.168.1.2'), false);
  });

  it('/readyz is 503 once the runtime stops taking work; /healthz stays 200', async () => {
    const s = await startTestServer();
    try {
      assert.equal((await api(s.url, 'GET', '/readyz')).status, 200);
      await s.runtime.stop({ graceMs: 0 });
      const r = await api(s.url, 'GET', '/readyz');
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, 'not_ready');
      assert.equal((await api(s.url, 'GET', '/healthz')).status, 200);
      const c = await api(s.url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt: 'x' } } });
      assert.equal(c.status, 503);
      assert.equal(c.body.error.code, 'shutting_down');
    } finally {
      await s.close();
    }
  });
});

describe('parseApiKeys', () => {
  it('parses key:owner pairs; the owner is after the last colon', () => {
    const m = parseApiKeys(' k1:alice , k:2:bob ');
    assert.deepEqual(
      [...m],
      [
        ['k1', 'alice'],
        ['k:2', 'bob'],
      ],
    );
    assert.equal(parseApiKeys(undefined).size, 0);
    assert.equal(parseApiKeys('  ').size, 0);
  });

  it('rejects malformed specs with a message naming the entry, never the key', () => {
    const bad: Array<[string, RegExp]> = [
      ['secretkey', /entry 1 has no ":owner"/],
      ['a:alice,,b:bob', /entry 2 is empty/],
      [':alice', /entry 1 has an empty key/],
      ['secretkey:', /entry 1: owner "" must be/],
      ['secretkey:al ice', /owner "al ice"/],
      ['secret key:alice', /whitespace/],
      ['secretkey:alice,secretkey:bob', /entry 2 repeats a key/],
    ];
    for (const [spec, re] of bad) {
      assert.throws(
        () => parseApiKeys(spec),
        (e: Error) => {
          assert.match(e.message, re, spec);
          assert.ok(!e.message.includes('secretkey') && !e.message.includes('secret key'), 'key not echoed');
          return true;
        },
      );
    }
  });

  it('createKeyMatcher finds the owner only for an exact key', () => {
    const match = createKeyMatcher(
      new Map([
        ['abc', 'a'],
        ['abd', 'b'],
      ]),
    );
    assert.equal(match('abc'), 'a');
    assert.equal(match('abd'), 'b');
    assert.equal(match('ab'), null);
    assert.equal(match('abcd'), null);
    assert.equal(match(''), null);
  });
});
