// Attack on "keyless means this machine's browsers only" and on the caps a hostile
// owner could otherwise get around: DNS rebinding (a foreign Host), cross-site
// writes and WebSockets (a foreign Origin, in a real Chromium too), CORS as an
// allowlist, security headers, the per-owner stream cap, WebSocket frames spending
// the rate limit, and keys read from a file.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { api, eventually, startTestServer, type TestServer } from './helpers/server.ts';
import { rawRequest, WS_UPGRADE_HEADERS } from './helpers/raw-http.ts';
import type { TestBrowser } from './helpers/browser.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { parseApiKeys } from '../src/server/auth.ts';
import { apiKeysFromEnv, securityFromEnv } from '../src/cli/security-env.ts';
import { UsageError } from '../src/cli/usage-error.ts';

const SLOW = JSON.stringify({ type: 'generate', input: { prompt: 'hi', model: 'simulated?tps=20&tokens=100000' } });
const JSON_CT = { 'content-type': 'application/json' };
const portOf = (url: string): string => new URL(url).port;

describe('keyless server: loopback Host names and same-origin browsers only', () => {
  let s: TestServer;
  let port: string;
  before(async () => {
    s = await startTestServer({
      security: { allowedHosts: ['leash.internal'], allowedOrigins: ['http://localhost:5173'] },
    });
    port = portOf(s.url);
  });
  after(() => s.close());

  it('a foreign Host (DNS rebinding) is refused on every kind of route; loopback names are served', async () => {
    const foreign = [
      `evil.example:${port}`,
      'evil.example',
      `127.0.0.1.evil.example:${port}`,
      `localhost.evil.example:${port}`,
      `127.0.0.1@evil.example:${port}`,
      `0x7f.0.0.1:${port}`,
      `[::ffff:7f00:1]:${port}`,
      `LEASH.INTERNAL.evil:${port}`,
    ];
    for (const host of foreign) {
      for (const [m, p] of [
        ['GET', '/api/tasks'],
        ['POST', '/api/tasks'],
        ['GET', '/'],
        ['GET', '/v1/models'],
        ['GET', '/metrics'],
      ] as const) {
        const r = await rawRequest(s.url, m, p, { host, ...JSON_CT }, m === 'POST' ? SLOW : undefined);
        assert.equal(r.status, 403, `${host} ${m} ${p}`);
        assert.equal(JSON.parse(r.body).error.code, 'host_not_allowed');
      }
      const ws = await rawRequest(s.url, 'GET', '/api/ws', { host, ...WS_UPGRADE_HEADERS });
      assert.equal(ws.upgraded, false, host);
      assert.equal(ws.status, 403, host);
    }
    assert.equal((await s.runtime.list({ owner: 'local' })).data.length, 0, 'no task was created');
    for (const host of [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
      `LocalHost:${port}`,
      `leash.internal:${port}`,
      `127.0.0.1`,
    ]) {
      assert.equal((await rawRequest(s.url, 'GET', '/api/tasks', { host })).status, 200, host);
    }
  });

  it('a cross-site write is refused (cancel-all, create, delete); curl and same-origin pass', async () => {
    const t = JSON.parse((await rawRequest(s.url, 'POST', '/api/tasks', JSON_CT, SLOW)).body);
    for (const origin of [
      'http://evil.example',
      'null',
      `http://127.0.0.1:${Number(port) + 1}`,
      `https://127.0.0.1:${port}.evil.example`,
      'file://',
      'http://localhost:5174',
    ]) {
      const cancel = await rawRequest(s.url, 'POST', '/api/tasks/cancel', { origin });
      assert.equal(cancel.status, 403, origin);
      assert.equal(JSON.parse(cancel.body).error.code, 'origin_not_allowed');
      assert.equal((await rawRequest(s.url, 'POST', '/api/tasks', { origin, ...JSON_CT }, SLOW)).status, 403);
      assert.equal((await rawRequest(s.url, 'DELETE', `/api/tasks/${t.id}`, { origin })).status, 403);
      assert.equal((await rawRequest(s.url, 'POST', `/api/threads`, { origin, ...JSON_CT }, '{}')).status, 403);
      assert.equal((await rawRequest(s.url, 'POST', `/v1/chat/completions`, { origin, ...JSON_CT }, '{}')).status, 403);
    }
    assert.equal((await s.runtime.get(t.id, 'local'))?.status, 'running', 'the task survived every attempt');
    assert.equal((await s.runtime.list({ owner: 'local' })).data.length, 1);
    // Reads carry no CORS permission, so a foreign page cannot see them; they are not refused.
    assert.equal((await rawRequest(s.url, 'GET', '/api/tasks', { origin: 'http://evil.example' })).status, 200);
    // Same origin (the web UI), an allowed origin, and no Origin at all (curl, SDKs) may write.
    assert.equal(
      (await rawRequest(s.url, 'POST', '/api/tasks', { origin: `http://127.0.0.1:${port}`, ...JSON_CT }, SLOW)).status,
      202,
    );
    assert.equal(
      (await rawRequest(s.url, 'POST', '/api/tasks', { origin: 'http://localhost:5173', ...JSON_CT }, SLOW)).status,
      202,
    );
    const all = await rawRequest(s.url, 'POST', '/api/tasks/cancel', {});
    assert.equal(all.status, 200);
    assert.equal(JSON.parse(all.body).cancelled, 3);
  });

  it('a cross-site WebSocket upgrade is refused; same-origin and origin-less ones open', async () => {
    for (const origin of ['http://evil.example', 'null', `http://localhost:${Number(port) + 1}`]) {
      const r = await rawRequest(s.url, 'GET', '/api/ws', { origin, ...WS_UPGRADE_HEADERS });
      assert.equal(r.upgraded, false, origin);
      assert.equal(r.status, 403, origin);
    }
    assert.equal(
      (await rawRequest(s.url, 'GET', '/api/ws', { origin: `http://127.0.0.1:${port}`, ...WS_UPGRADE_HEADERS }))
        .upgraded,
      true,
    );
    assert.equal((await rawRequest(s.url, 'GET', '/api/ws', WS_UPGRADE_HEADERS)).upgraded, true);
  });

  it('CORS is an allowlist: only a listed origin gets Access-Control-Allow-Origin', async () => {
    const pre = (origin: string) =>
      rawRequest(s.url, 'OPTIONS', '/api/tasks', {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,authorization',
      });
    const ok = await pre('http://localhost:5173');
    assert.equal(ok.headers['access-control-allow-origin'], 'http://localhost:5173');
    const evil = await pre('http://evil.example');
    assert.equal(evil.headers['access-control-allow-origin'], undefined);
    const read = await rawRequest(s.url, 'GET', '/api/tasks', { origin: 'http://evil.example' });
    assert.equal(read.headers['access-control-allow-origin'], undefined);
  });

  it('the UI and the API carry security headers (CSP with frame-ancestors, nosniff, referrer policy)', async () => {
    for (const p of ['/', '/api/tasks', '/healthz']) {
      const r = await rawRequest(s.url, 'GET', p);
      const csp = String(r.headers['content-security-policy'] ?? '');
      assert.match(csp, /frame-ancestors 'none'/, p);
      assert.match(csp, /script-src 'self'/, p);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', p);
      assert.equal(r.headers['referrer-policy'], 'no-referrer', p);
    }
  });
});

describe('with keys: CORS preflights need no key; nothing else does', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({
      apiKeys: parseApiKeys('k-alice-0123456789:alice'),
      security: { allowedOrigins: ['https://app.example'] },
    });
  });
  after(() => s.close());

  it('preflight from an allowed origin answers its headers; the request itself still needs the key', async () => {
    const pre = await rawRequest(s.url, 'OPTIONS', '/api/tasks', {
      origin: 'https://app.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization,content-type',
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://app.example');
    assert.match(String(pre.headers['access-control-allow-headers']), /authorization/);
    assert.equal(pre.body, '');
    const get = await rawRequest(s.url, 'GET', '/api/tasks', { origin: 'https://app.example' });
    assert.equal(get.status, 401);
    const ok = await rawRequest(s.url, 'GET', '/api/tasks', {
      origin: 'https://app.example',
      authorization: 'Bearer k-alice-0123456789',
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example');
    // A preflight cannot smuggle a real request: OPTIONS on a task answers headers only.
    const t = await api(s.url, 'POST', '/api/tasks', { key: 'k-alice-0123456789', body: JSON.parse(SLOW) });
    const o = await rawRequest(s.url, 'OPTIONS', `/api/tasks/${t.body.id}`, {
      origin: 'https://app.example',
      'access-control-request-method': 'GET',
    });
    assert.ok(!o.body.includes(t.body.id));
  });
  it('streams (task events, /v1 chat completions and responses) carry the CORS and security headers too', async () => {
    const key = { authorization: 'Bearer k-alice-0123456789' };
    const t = await api(s.url, 'POST', '/api/tasks', { key: 'k-alice-0123456789', body: JSON.parse(SLOW) });
    const streams: Array<[string, string, string | undefined]> = [
      ['GET', `/api/tasks/${t.body.id}/events`, undefined],
      ['GET', `/api/tasks/${t.body.id}/events?format=ai-sdk`, undefined],
      [
        'POST',
        '/v1/chat/completions',
        JSON.stringify({ model: 'simulated?tps=5', messages: [{ role: 'user', content: 'x' }], stream: true }),
      ],
      ['POST', '/v1/responses', JSON.stringify({ model: 'simulated?tps=5', input: 'x', stream: true })],
    ];
    for (const [m, p, body] of streams) {
      for (const origin of ['https://app.example', 'http://evil.example']) {
        const r = await rawRequest(s.url, m, p, { ...key, origin, 'content-type': 'application/json' }, body);
        const allowed = origin === 'https://app.example';
        // A foreign origin's write is refused; its read is served without CORS permission to see it.
        assert.equal(r.status, allowed || m === 'GET' ? 200 : 403, `${m} ${p} from ${origin}`);
        if (r.status !== 200) continue;
        assert.match(String(r.headers['content-type']), /event-stream/, p);
        assert.equal(r.headers['access-control-allow-origin'], allowed ? 'https://app.example' : undefined, p);
        assert.match(String(r.headers['content-security-policy']), /frame-ancestors 'none'/, p);
      }
    }
    await api(s.url, 'POST', '/api/tasks/cancel', { key: 'k-alice-0123456789', body: {} });
  });
});

describe('per-owner caps on open streams, long polls and WebSockets', () => {
  let s: TestServer;
  const A = 'k-alice-0123456789';
  const B = 'k-bob-0123456789';
  before(async () => {
    s = await startTestServer({
      apiKeys: parseApiKeys(`${A}:alice,${B}:bob`),
      security: { maxStreamsPerOwner: 3 },
      runtime: { maxRunningPerOwner: 16 },
    });
  });
  after(() => s.close());

  const open = async (key: string, path: string): Promise<{ status: number; ac: AbortController; res: Response }> => {
    const ac = new AbortController();
    const res = await fetch(s.url + path, { headers: { authorization: `Bearer ${key}` }, signal: ac.signal });
    return { status: res.status, ac, res };
  };

  it('past the cap: 429 too_many_streams with Retry-After, before any task is made; other owners unaffected; a closed stream frees its slot', async () => {
    const t = (await api(s.url, 'POST', '/api/tasks', { key: A, body: JSON.parse(SLOW) })).body;
    const held = [await open(A, `/api/tasks/${t.id}/events`), await open(A, `/api/tasks/${t.id}/events`)];
    const ws = new WebSocket(s.url.replace('http', 'ws') + '/api/ws', { headers: { authorization: `Bearer ${A}` } });
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    assert.deepEqual(
      held.map((h) => h.status),
      [200, 200],
    );
    const before = (await s.runtime.list({ owner: 'alice' })).data.length;
    const over = await api(s.url, 'GET', `/api/tasks/${t.id}/events`, { key: A });
    assert.equal(over.status, 429);
    assert.equal(over.body.error.code, 'too_many_streams');
    assert.ok(Number(over.headers.get('retry-after')) >= 1);
    assert.equal((await api(s.url, 'GET', `/api/tasks/${t.id}/wait?timeout_s=5`, { key: A })).status, 429);
    const streamed = await api(s.url, 'POST', '/api/tasks', { key: A, body: { ...JSON.parse(SLOW), stream: true } });
    assert.equal(streamed.status, 429);
    const run = await api(s.url, 'POST', '/v1/chat/completions', {
      key: A,
      body: { model: 'simulated', messages: [{ role: 'user', content: 'x' }], stream: true },
    });
    assert.equal(run.status, 429);
    const up = await rawRequest(s.url, 'GET', '/api/ws', { ...WS_UPGRADE_HEADERS, authorization: `Bearer ${A}` });
    assert.equal(up.upgraded, false);
    assert.equal(up.status, 429);
    assert.equal((await s.runtime.list({ owner: 'alice' })).data.length, before, 'no task was created past the cap');
    // Plain requests are not streams.
    assert.equal((await api(s.url, 'GET', `/api/tasks/${t.id}`, { key: A })).status, 200);
    // Bob's budget is his own.
    const tb = (await api(s.url, 'POST', '/api/tasks', { key: B, body: JSON.parse(SLOW) })).body;
    const bob = await open(B, `/api/tasks/${tb.id}/events`);
    assert.equal(bob.status, 200);
    bob.ac.abort();
    // Closing one of alice's frees it.
    held[0]!.ac.abort();
    await eventually(async () => (await open(A, `/api/tasks/${t.id}/wait?timeout_s=0`)).status === 200);
    ws.close();
    held[1]!.ac.abort();
    await api(s.url, 'POST', '/api/tasks/cancel', { key: A, body: {} });
    await api(s.url, 'POST', '/api/tasks/cancel', { key: B, body: {} });
  });
});

describe('WebSocket frames spend the same rate limit as requests', () => {
  let s: TestServer;
  const A = 'k-alice-0123456789';
  before(async () => {
    s = await startTestServer({ apiKeys: parseApiKeys(`${A}:alice`), rateLimit: { max: 6, timeWindowMs: 60_000 } });
  });
  after(() => s.close());

  it('a flood of frames is answered rate_limited past the budget, and HTTP is then limited too', async () => {
    const ws = new WebSocket(s.url.replace('http', 'ws') + '/api/ws', { headers: { authorization: `Bearer ${A}` } });
    const frames: Array<{
      type: string;
      request_id?: string;
      error?: { code: string; details?: { retry_after_s?: number } };
    }> = [];
    ws.on('message', (d) => frames.push(JSON.parse(String(d))));
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    for (let i = 0; i < 12; i++) ws.send(JSON.stringify({ type: 'ping', request_id: `p${i}` }));
    await eventually(async () => frames.length >= 12);
    ws.close();
    const pongs = frames.filter((f) => f.type === 'pong').length;
    const limited = frames.filter((f) => f.type === 'error' && f.error?.code === 'rate_limited');
    // The upgrade itself spent one of the 6.
    assert.equal(pongs, 5, JSON.stringify(frames));
    assert.equal(limited.length, 7);
    assert.equal(limited[0]!.request_id, 'p5');
    assert.ok((limited[0]!.error?.details?.retry_after_s ?? 0) >= 1);
    assert.equal((await api(s.url, 'GET', '/api/tasks', { key: A })).status, 429);
  });
});

describe('keys from a file', () => {
  it('LEASH_API_KEYS_FILE: one entry per line, comments ignored; errors name the file, never a key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-keys-'));
    try {
      const f = join(dir, 'keys');
      await writeFile(f, '# operators\nkey-one-secret:alice\n\n  key-two-secret:bob  \n');
      assert.deepEqual(
        [...apiKeysFromEnv({ LEASH_API_KEYS_FILE: f })],
        [
          ['key-one-secret', 'alice'],
          ['key-two-secret', 'bob'],
        ],
      );
      assert.throws(() => apiKeysFromEnv({ LEASH_API_KEYS_FILE: f, LEASH_API_KEYS: 'a:b' }), /not both/);
      assert.throws(
        () => apiKeysFromEnv({ LEASH_API_KEYS_FILE: join(dir, 'missing') }),
        (e: Error) => e instanceof UsageError && /ENOENT/.test(e.message),
      );
      await writeFile(f, 'key-one-secret:alice\nkey-two-secret\n');
      assert.throws(
        () => apiKeysFromEnv({ LEASH_API_KEYS_FILE: f }),
        (e: Error) =>
          e instanceof UsageError && /LEASH_API_KEYS_FILE entry 2/.test(e.message) && !e.message.includes('secret'),
      );
      await writeFile(f, '# nothing\n');
      assert.throws(() => apiKeysFromEnv({ LEASH_API_KEYS_FILE: f }), /no "key:owner"/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the browser settings are checked at start', () => {
    assert.throws(() => securityFromEnv({ LEASH_ALLOWED_ORIGINS: 'evil.example' }), UsageError);
    assert.throws(() => securityFromEnv({ LEASH_ALLOWED_HOSTS: 'a.example:8080' }), UsageError);
    assert.throws(() => securityFromEnv({ LEASH_MAX_STREAMS_PER_OWNER: '0' }), UsageError);
    assert.throws(() => securityFromEnv({ LEASH_METRICS_PUBLIC: 'yes' }), UsageError);
    assert.deepEqual(
      securityFromEnv({
        LEASH_ALLOWED_ORIGINS: 'http://localhost:5173, https://a.example',
        LEASH_MAX_STREAMS_PER_OWNER: '8',
      }),
      {
        allowedHosts: [],
        allowedOrigins: ['http://localhost:5173', 'https://a.example'],
        metricsPublic: false,
        maxStreamsPerOwner: 8,
      },
    );
  });
});

describe('in a real Chromium: a foreign page cannot drive a keyless server, its own UI can', () => {
  let stack: Stack;
  let s: TestServer;
  let browser: TestBrowser;
  let evil: Server;
  let evilUrl: string;
  before(async () => {
    stack = await startStack({ browser: true });
    ({ s, browser } = stack);
    evil = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>evil</title>'),
    );
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    const a = evil.address();
    evilUrl = `http://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}/`;
  });
  after(async () => {
    evil?.close();
    await stack?.close();
  });

  it('cross-site cancel-all and WebSocket are refused; same-origin fetch and WebSocket work', async () => {
    const t = JSON.parse((await rawRequest(s.url, 'POST', '/api/tasks', JSON_CT, SLOW)).body);
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(evilUrl);
      const attack = await page.evaluate(async (target: string) => {
        // What a malicious page can send without CORS permission: a "simple" POST, and a WebSocket.
        await fetch(`${target}/api/tasks/cancel`, { method: 'POST', mode: 'no-cors' }).catch(() => {});
        const ws = await new Promise<string>((resolve) => {
          const sock = new WebSocket(`${target.replace('http', 'ws')}/api/ws`);
          sock.onopen = () => resolve('open');
          sock.onerror = () => resolve('error');
        });
        return ws;
      }, s.url);
      assert.equal(attack, 'error');
      assert.equal((await s.runtime.get(t.id, 'local'))?.status, 'running', 'the cross-site POST cancelled nothing');

      await page.goto(s.url + '/');
      const own = await page.evaluate(async (id: string) => {
        const r = await fetch(`/api/tasks/${id}/cancel`, { method: 'POST' });
        const ws = await new Promise<string>((resolve) => {
          const sock = new WebSocket(`${location.origin.replace('http', 'ws')}/api/ws`);
          sock.onopen = () => {
            sock.close();
            resolve('open');
          };
          sock.onerror = () => resolve('error');
        });
        return { cancel: r.status, ws };
      }, t.id);
      assert.deepEqual(own, { cancel: 202, ws: 'open' });
    } finally {
      await ctx.close();
    }
  });
});
