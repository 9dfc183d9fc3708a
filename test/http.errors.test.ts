// Bad input and framework errors all answer `{error: {code, message, details?}}`
// with the right status, and never a stack trace.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { api, startTestServer } from './helpers/server.ts';
import type { TestServer } from './helpers/server.ts';
import { toErrorResponse, zodDetails } from '../src/server/errors.ts';
import { LeashError } from '../src/core/errors.ts';
import { z } from 'zod';

function assertErrorShape(body: unknown, code: string): void {
  const b = body as { error?: { code?: unknown; message?: unknown } };
  assert.equal(typeof b.error, 'object', JSON.stringify(body));
  assert.equal(b.error?.code, code);
  assert.equal(typeof b.error?.message, 'string');
  assert.ok((b.error?.message as string).length > 0);
  assert.doesNotMatch(JSON.stringify(body), /\n\s+at |node_modules|\.ts:\d+/, 'no stack trace');
}

describe('HTTP errors', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.close());

  it('wrong types: 400 invalid_request with one detail per field', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', {
      body: { type: 5, input: {}, priority: 'high', deadline_ms: -1, thread_id: 3, stream: 'yes', bogus: 1 },
    });
    assert.equal(r.status, 400);
    assertErrorShape(r.body, 'invalid_request');
    const paths = r.body.error.details.map((d: { path: string }) => d.path).sort();
    assert.deepEqual(paths, ['bogus', 'deadline_ms', 'priority', 'stream', 'thread_id', 'type']);
    for (const d of r.body.error.details) assert.equal(typeof d.message, 'string');
  });

  it('priority out of range and a non-object body are invalid_request', async () => {
    const p = await api(s.url, 'POST', '/api/tasks', {
      body: { type: 'generate', input: { prompt: 'x' }, priority: 101 },
    });
    assert.equal(p.status, 400);
    assert.equal(p.body.error.details[0].path, 'priority');
    for (const body of [[1, 2], 'text', null, 42]) {
      const r = await api(s.url, 'POST', '/api/tasks', { body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assertErrorShape(r.body, 'invalid_request');
    }
    const none = await api(s.url, 'POST', '/api/tasks');
    assert.equal(none.status, 400);
    assertErrorShape(none.body, 'invalid_request');
  });

  it('invalid JSON: 400 invalid_json', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', {
      rawBody: '{"type": "generate",',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(r.status, 400);
    assertErrorShape(r.body, 'invalid_json');
  });

  it('unsupported content type: 415', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const r = await api(s.url, 'POST', '/api/tasks', { rawBody: 'type=generate', headers: { 'content-type': type } });
      assert.equal(r.status, 415, type);
      assertErrorShape(r.body, 'unsupported_media_type');
    }
  });

  it('body too large: 413 payload_too_large (default limit 1 MiB)', async () => {
    const prompt = 'x'.repeat(1024 * 1024 + 10);
    const r = await api(s.url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt } } });
    assert.equal(r.status, 413);
    assertErrorShape(r.body, 'payload_too_large');
    const ok = await api(s.url, 'POST', '/api/tasks', {
      body: { type: 'generate', input: { prompt: 'y'.repeat(1000), model: 'simulated?tps=0&tokens=1' } },
    });
    assert.equal(ok.status, 202);
  });

  it('unknown route: 404 not_found', async () => {
    for (const [method, path] of [
      ['GET', '/nope'],
      ['POST', '/api/nope'],
      ['GET', '/api/tasks/x/y/z'],
    ] as const) {
      const r = await api(s.url, method, path);
      assert.equal(r.status, 404, `${method} ${path}`);
      assertErrorShape(r.body, 'not_found');
    }
  });

  it('known path, wrong method: 405 method_not_allowed with Allow', async () => {
    const cases: Array<[string, string, string[]]> = [
      ['PUT', '/api/tasks', ['GET', 'POST']],
      ['DELETE', '/api/tasks', ['GET', 'POST']],
      ['PATCH', '/api/tasks/task_abc', ['GET', 'DELETE']],
      ['GET', '/api/tasks/task_abc/cancel', ['POST']],
      ['POST', '/healthz', ['GET']],
    ];
    for (const [method, path, want] of cases) {
      const r = await api(s.url, method, path);
      assert.equal(r.status, 405, `${method} ${path}`);
      assertErrorShape(r.body, 'method_not_allowed');
      const allow = (r.headers.get('allow') ?? '').split(/,\s*/);
      for (const m of want) assert.ok(allow.includes(m), `${path}: Allow ${allow.join()} lacks ${m}`);
      assert.ok(!allow.includes(method));
    }
  });

  it('/api/tasks/cancel is the batch route, not a task id', async () => {
    const r = await api(s.url, 'POST', '/api/tasks/cancel', { body: {} });
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.body).sort(), ['cancelled', 'ids']);
    // GET on it is `GET /api/tasks/:id` for an id that can't exist.
    const g = await api(s.url, 'GET', '/api/tasks/cancel');
    assert.equal(g.status, 404);
    assertErrorShape(g.body, 'not_found');
  });

  it('responses carry a request id; a safe incoming one is reused', async () => {
    const a = await api(s.url, 'GET', '/healthz');
    assert.match(a.headers.get('x-request-id') ?? '', /^req_/);
    const b = await api(s.url, 'GET', '/healthz', { headers: { 'x-request-id': 'abc-123' } });
    assert.equal(b.headers.get('x-request-id'), 'abc-123');
    const c = await api(s.url, 'GET', '/healthz', { headers: { 'x-request-id': 'bad id with spaces' } });
    assert.match(c.headers.get('x-request-id') ?? '', /^req_/);
  });
});

describe('unexpected errors', () => {
  it('a failing store answers 500 internal_error without its message; /readyz 503', async () => {
    const s = await startTestServer();
    try {
      // Every store call now throws something unexpected, naming internals.
      const boom = async (): Promise<never> => {
        throw new Error('SQLITE_IOERR: disk I/O error at /var/secret/leash.db (closed)');
      };
      s.store.listTasks = boom;
      s.store.ping = boom;
      const r = await api(s.url, 'GET', '/api/tasks');
      assert.equal(r.status, 500);
      assertErrorShape(r.body, 'internal_error');
      assert.equal(r.body.error.message, 'Internal server error');
      assert.doesNotMatch(JSON.stringify(r.body), /sqlite|closed/i, 'internals are not sent');
      const ready = await api(s.url, 'GET', '/readyz');
      assert.equal(ready.status, 503);
      assertErrorShape(ready.body, 'not_ready');
      const health = await api(s.url, 'GET', '/healthz');
      assert.equal(health.status, 200);
    } finally {
      await s.close().catch(() => {});
    }
  });

  it('toErrorResponse maps codes and hides unknown ones', () => {
    assert.equal(toErrorResponse(new LeashError('queue_full', 'full')).status, 429);
    assert.equal(toErrorResponse(new LeashError('task_active', 'x')).status, 409);
    const weird = toErrorResponse(LeashError.fromJSON({ code: 'disk_on_fire', message: 'db at /secret/path is gone' }));
    assert.equal(weird.status, 500);
    assert.equal(weird.body.error.code, 'internal_error');
    assert.equal(weird.internal, true);
    // A store outage is a 503 the client may retry, with its (path-naming) message replaced.
    const down = toErrorResponse(new LeashError('store_unavailable', 'db at /secret/path is gone'));
    assert.equal(down.status, 503);
    assert.equal(down.body.error.code, 'store_unavailable');
    assert.doesNotMatch(down.body.error.message, /secret/);
    const plain = toErrorResponse(new TypeError('x is undefined'));
    assert.equal(plain.status, 500);
    assert.doesNotMatch(JSON.stringify(plain.body), /undefined/);
    assert.equal(toErrorResponse(new LeashError('shutting_down', 'bye')).status, 503);
    assert.equal(toErrorResponse(new LeashError('shutting_down', 'bye')).body.error.code, 'shutting_down');
  });

  it('zodDetails names nested paths and each unknown key', () => {
    const schema = z.strictObject({ a: z.object({ b: z.number() }) });
    const r = schema.safeParse({ a: { b: 'x' }, c: 1, d: 2 });
    assert.equal(r.success, false);
    const details = zodDetails(r.error!);
    assert.deepEqual(details.map((d) => d.path).sort(), ['a.b', 'c', 'd']);
  });
});
