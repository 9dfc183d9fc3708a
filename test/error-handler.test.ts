// The one error handler (src/server/error-handler.ts): the answer's shape follows the
// surface the request was routed to — OpenAI's under /v1 (whatever spelling of the
// prefix the router decoded), leash's everywhere else — for errors from routes, from
// hooks (auth, rate limit) and from the router (404, 405) alike.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseApiKeys } from '../src/server/auth.ts';
import { rawRequest } from './helpers/raw-http.ts';
import { api, startTestServer, type TestServer } from './helpers/server.ts';

const KEY = 'eh-key-0123456789';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever JSON came back
const isOpenAi = (b: any): boolean =>
  typeof b.error?.message === 'string' && typeof b.error?.type === 'string' && 'param' in b.error;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- whatever JSON came back
const isLeash = (b: any): boolean =>
  typeof b.error?.code === 'string' && typeof b.error?.message === 'string' && !('type' in b.error);

describe('one error handler, two formats chosen by route prefix', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ apiKeys: parseApiKeys(`${KEY}:alice`), rateLimit: { max: 40 } });
  });
  after(() => s.close());

  it('404 and 405 from the router', async () => {
    for (const p of ['/v1/nope', '/%76%31/nope', '/v1/models/x/y']) {
      const r = await rawRequest(s.url, 'GET', p, { authorization: `Bearer ${KEY}` });
      assert.equal(r.status, 404, p);
      assert.ok(isOpenAi(JSON.parse(r.body)), `${p}: ${r.body}`);
    }
    const api404 = await api(s.url, 'GET', '/api/nope', { key: KEY });
    assert.equal(api404.status, 404);
    assert.ok(isLeash(api404.body), JSON.stringify(api404.body));
    const v1405 = await api(s.url, 'DELETE', '/v1/chat/completions', { key: KEY });
    assert.equal(v1405.status, 405);
    assert.equal(v1405.headers.get('allow'), 'POST');
    assert.ok(isOpenAi(v1405.body), JSON.stringify(v1405.body));
    assert.equal(v1405.body.error.code, 'method_not_allowed');
    const api405 = await api(s.url, 'PUT', '/api/tasks', { key: KEY, body: {} });
    assert.equal(api405.status, 405);
    assert.ok(isLeash(api405.body), JSON.stringify(api405.body));
  });

  it('401 from the auth hook, with WWW-Authenticate on both', async () => {
    const v1 = await api(s.url, 'GET', '/v1/models');
    assert.equal(v1.status, 401);
    assert.ok(isOpenAi(v1.body));
    assert.equal(v1.body.error.type, 'authentication_error');
    const a = await api(s.url, 'GET', '/api/tasks');
    assert.equal(a.status, 401);
    assert.ok(isLeash(a.body));
    for (const r of [v1, a]) assert.equal(r.headers.get('www-authenticate'), 'Bearer');
  });

  it('400 from a route: details on /api, param on /v1', async () => {
    const a = await api(s.url, 'POST', '/api/tasks', { key: KEY, body: { type: 'generate', priority: 'high' } });
    assert.equal(a.status, 400);
    assert.ok(isLeash(a.body));
    assert.ok(a.body.error.details.some((d: { path: string }) => d.path === 'priority'));
    const v1 = await api(s.url, 'POST', '/v1/chat/completions', {
      key: KEY,
      body: { model: 'simulated', messages: 'x' },
    });
    assert.equal(v1.status, 400);
    assert.ok(isOpenAi(v1.body));
    assert.equal(v1.body.error.param, 'messages');
  });

  it('429 from the rate limit carries Retry-After in both formats', async () => {
    let v1: Awaited<ReturnType<typeof api>> | undefined;
    for (let i = 0; i < 60 && v1?.status !== 429; i++) v1 = await api(s.url, 'GET', '/v1/models', { key: KEY });
    assert.equal(v1?.status, 429);
    assert.ok(isOpenAi(v1!.body), JSON.stringify(v1!.body));
    assert.equal(v1!.body.error.type, 'rate_limit_error');
    assert.match(v1!.headers.get('retry-after') ?? '', /^\d+$/);
    const a = await api(s.url, 'GET', '/api/tasks', { key: KEY });
    assert.equal(a.status, 429);
    assert.ok(isLeash(a.body));
    assert.match(a.headers.get('retry-after') ?? '', /^\d+$/);
  });
});
