// Attack on "a key is needed": every route the server has (read from its router, not
// hand-picked) × its methods and a wrong one × generated spellings of its path
// (percent-encoding of each character, encoded slashes, dot segments, doubled and
// trailing slashes, case, `;` parameters, backslashes, query and prefix tricks),
// sent byte for byte. Without a key none may reach a handler: the runtime records
// every call, and the sweep must leave it untouched. With a key, the same decoded
// spellings do reach their handler (so the router really does decode them, and the
// sweep is not passing because nothing matched).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { startOnTempDb, startTestServer, type TestServer } from './helpers/server.ts';
import { rawRequest, WS_UPGRADE_HEADERS } from './helpers/raw-http.ts';
import { parseApiKeys } from '../src/server/auth.ts';
import { routesOf, type Route } from './helpers/routes.ts';

const KEY = 'alice-key-0123456789';
// The API reference (/docs, /openapi.json) describes the API and holds no data.
const PUBLIC = new Set(['/', '/healthz', '/readyz', '/index.html', '/favicon.svg', '/docs', '/openapi.json']);
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

const enc = (c: string): string => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');

/** Spellings of `path` that a router might read as the same route. */
export function spellings(path: string): string[] {
  const out = new Set<string>([path]);
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (c === '/') {
      out.add(path.slice(0, i) + '%2F' + path.slice(i + 1));
      out.add(path.slice(0, i) + '%2f' + path.slice(i + 1));
      out.add(path.slice(0, i) + '//' + path.slice(i + 1));
      out.add(path.slice(0, i) + '\\' + path.slice(i + 1));
      out.add(path.slice(0, i) + '/./' + path.slice(i + 1));
      out.add(path.slice(0, i) + '/x/../' + path.slice(i + 1));
      out.add(path.slice(0, i) + '/%2e/' + path.slice(i + 1));
      out.add(path.slice(0, i) + ';x/' + path.slice(i + 1));
    } else {
      out.add(path.slice(0, i) + enc(c) + path.slice(i + 1));
      out.add(path.slice(0, i) + enc(c).toLowerCase() + path.slice(i + 1));
    }
  }
  const segs = path.split('/');
  out.add(path.toUpperCase());
  out.add(segs.map((s, i) => (i === 1 ? s.toUpperCase() : s)).join('/'));
  out.add([...path].map((c) => (/[a-z]/.test(c) ? enc(c) : c)).join(''));
  out.add(path.replace(/[a-z]/, (c) => '%25' + c.charCodeAt(0).toString(16)));
  out.add(`/${path}`);
  out.add(`${path}/`);
  out.add(`${path};jsessionid=1`);
  out.add(`${path}%00`);
  out.add(`${path}?/healthz`);
  out.add(`${path}?api_key=`);
  for (const pub of ['/healthz', '/readyz', '/assets', '/index.html', '/docs', '/openapi.json']) {
    out.add(`${pub}/..${path}`);
    out.add(`${pub}/%2e%2e${path}`);
    out.add(`${pub}%2F..%2F${path.slice(1)}`);
  }
  return [...out];
}

describe('no spelling of a path reaches a handler without a key', () => {
  let s: TestServer;
  let routes: Route[];
  let taskId: string;
  let threadId: string;
  const calls: string[] = [];

  before(async () => {
    s = await startTestServer({ apiKeys: parseApiKeys(`${KEY}:alice`) });
    const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
    const t = await rawRequest(
      s.url,
      'POST',
      '/api/tasks',
      headers,
      JSON.stringify({ type: 'generate', input: { prompt: 'x', model: 'simulated?tps=0&tokens=1' } }),
    );
    taskId = JSON.parse(t.body).id;
    threadId = JSON.parse((await rawRequest(s.url, 'POST', '/api/threads', headers, '{}')).body).id;
    routes = routesOf(s.server.app.printRoutes({ commonPrefix: false }));
    // Every handler that touches data goes through the runtime: record each call.
    const rt = s.runtime as unknown as Record<string, unknown>;
    const proto = Object.getPrototypeOf(s.runtime) as object;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const fn = Object.getOwnPropertyDescriptor(proto, name)?.value as unknown;
      if (name === 'constructor' || typeof fn !== 'function') continue;
      rt[name] = function (this: unknown, ...args: unknown[]) {
        calls.push(name);
        return (fn as (...a: unknown[]) => unknown).apply(this, args);
      };
    }
  });
  after(() => s.close());

  it('the router lists every route group', () => {
    const paths = routes.map((r) => r.path);
    for (const p of [
      '/api/tasks',
      '/api/tasks/:id/events',
      '/api/threads/:id/runs',
      '/api/ws',
      '/v1/chat/completions',
      '/v1/responses/:id/cancel',
      '/metrics',
    ]) {
      assert.ok(paths.includes(p), `${p} in ${paths.join(' ')}`);
    }
  });

  it('HTTP: every route × method × spelling without a key is refused before any handler', async () => {
    let sent = 0;
    const leaks: string[] = [];
    for (const r of routes) {
      if (PUBLIC.has(r.path) || r.path.startsWith('/assets/')) continue;
      const concrete = r.path.replace(':id', r.path.startsWith('/api/threads') ? threadId : taskId);
      for (const path of spellings(concrete)) {
        for (const method of METHODS) {
          calls.length = 0;
          const res = await rawRequest(
            s.url,
            method,
            path,
            { 'content-type': 'application/json', accept: 'application/json' },
            method === 'GET' || method === 'HEAD' ? undefined : '{}',
          );
          sent++;
          if (calls.length > 0 || res.status < 400 || res.body.includes(taskId) || res.body.includes(threadId)) {
            leaks.push(`${method} ${path} → ${res.status} ${calls.join(',')}`);
          }
        }
      }
    }
    assert.deepEqual(leaks, []);
    assert.ok(sent > 3000, `sent ${sent}`);
  });

  it('WebSocket: no spelling of /api/ws upgrades without a key (any Origin, any key position)', async () => {
    for (const path of spellings('/api/ws')) {
      const extras: Array<Record<string, string>> = [
        {},
        { origin: 'http://127.0.0.1' },
        { 'sec-websocket-protocol': 'leash.v1, bearer.wrong' },
      ];
      for (const extra of extras) {
        const q = path.includes('?') ? '&api_key=wrong' : '?api_key=wrong';
        for (const p of [path, path + q]) {
          calls.length = 0;
          const res = await rawRequest(s.url, 'GET', p, { ...WS_UPGRADE_HEADERS, ...extra });
          assert.equal(res.upgraded, false, `${p} upgraded`);
          assert.ok([400, 401, 403].includes(res.status), `${p} → ${res.status}`);
          assert.deepEqual(calls, []);
        }
      }
    }
  });

  it('with the key, decoded spellings reach their handler (the sweep above is not vacuous)', async () => {
    const auth = { authorization: `Bearer ${KEY}` };
    for (const p of ['/api/tasks', '/%61pi/tasks', '/%61%70%69/tasks', '/api/t%61sks']) {
      const res = await rawRequest(s.url, 'GET', p, auth);
      assert.equal(res.status, 200, p);
      assert.ok(res.body.includes(taskId), p);
    }
    assert.equal((await rawRequest(s.url, 'GET', '/%76%31/models', auth)).status, 200);
    const ws = await rawRequest(s.url, 'GET', '/%61pi/ws', { ...WS_UPGRADE_HEADERS, ...auth });
    assert.equal(ws.upgraded, true);
    // The attack from issue #15, spelled out: no key, encoded prefix.
    for (const [m, p] of [
      ['GET', '/%61pi/tasks'],
      ['POST', '/%61pi/tasks'],
      ['GET', '/%76%31/models'],
      ['GET', '/%61pi/threads'],
    ]) {
      const res = await rawRequest(
        s.url,
        m!,
        p!,
        { 'content-type': 'application/json' },
        m === 'POST' ? '{"type":"generate","input":{}}' : undefined,
      );
      assert.equal(res.status, 401, `${m} ${p}`);
    }
  });

  it('a key in ?api_key= is taken only on WebSocket upgrades, and never logged on any path spelling', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (l: string) => void lines.push(l) });
    const { server, close } = await startOnTempDb('leash-keylog-', logger, { apiKeys: parseApiKeys(`${KEY}:alice`) });
    try {
      assert.equal((await rawRequest(server.url, 'GET', `/api/tasks?api_key=${KEY}`)).status, 401);
      assert.equal((await rawRequest(server.url, 'GET', `/%61pi/tasks?x=1&api_key=${KEY}`)).status, 401);
      for (const p of ['/api/ws', '/%61pi/ws', '/api//ws', '/nope']) {
        await rawRequest(server.url, 'GET', `${p}?api_key=${KEY}`, WS_UPGRADE_HEADERS);
      }
      const up = await rawRequest(server.url, 'GET', `/%61pi/ws?api_key=${KEY}`, WS_UPGRADE_HEADERS);
      assert.equal(up.upgraded, true, 'the query key is honoured on an upgrade, whatever the spelling');
    } finally {
      await close();
    }
    assert.ok(lines.length > 5, 'the server logged the requests');
    assert.deepEqual(
      lines.filter((l) => l.includes(KEY)),
      [],
    );
  });
});
