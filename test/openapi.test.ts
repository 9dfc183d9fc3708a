// GET /openapi.json and GET /docs: the document is OpenAPI 3.1 in shape, covers every
// /api route the server really has (read from its router: a route added without an
// entry in src/server/openapi/paths.ts fails here), its schemas are the ones the
// routes parse with, and the reference page loads in a real Chromium without errors.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseApiKeys } from '../src/server/auth.ts';
import { launchBrowser, type TestBrowser } from './helpers/browser.ts';
import { routesOf } from './helpers/routes.ts';
import { api, startTestServer, type TestServer } from './helpers/server.ts';

const KEY = 'openapi-key-0123456789';
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the document is whatever JSON was served
type Doc = any;

/** Every `$ref` in `node`. */
function refs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) refs(n, out);
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

describe('the OpenAPI document and the API reference', () => {
  let s: TestServer;
  let doc: Doc;

  before(async () => {
    s = await startTestServer({ apiKeys: parseApiKeys(`${KEY}:alice`) });
    const r = await api(s.url, 'GET', '/openapi.json');
    assert.equal(r.status, 200, 'served without a key');
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    doc = r.body;
  });
  after(() => s.close());

  it('is OpenAPI 3.1 in shape: info, paths of operations with responses, resolvable refs, unique operation ids', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(typeof doc.info.title, 'string');
    assert.match(doc.info.version, /^\d+\.\d+\.\d+/);
    const ids = new Set<string>();
    for (const [path, item] of Object.entries<Record<string, Doc>>(doc.paths)) {
      assert.match(path, /^\//);
      for (const [method, op] of Object.entries(item)) {
        assert.ok(HTTP_METHODS.includes(method), `${method} ${path}`);
        assert.ok(Object.keys(op.responses).length > 0, `${method} ${path} has responses`);
        for (const status of Object.keys(op.responses)) assert.match(status, /^[1-5]\d\d$/);
        for (const r of Object.values<Doc>(op.responses)) assert.equal(typeof r.description, 'string');
        assert.ok(!ids.has(op.operationId), `operationId ${op.operationId} once`);
        ids.add(op.operationId);
        // Every {param} of the path is declared as a required path parameter.
        for (const [, name] of path.matchAll(/\{(\w+)\}/g)) {
          const p = (op.parameters ?? []).find((x: Doc) => x.in === 'path' && x.name === name);
          assert.ok(p?.required === true, `${method} ${path} declares {${name}}`);
        }
        for (const p of op.parameters ?? []) assert.ok(['path', 'query', 'header'].includes(p.in));
      }
    }
    for (const ref of refs(doc)) {
      const m = /^#\/components\/schemas\/(.+)$/.exec(ref);
      assert.ok(m && doc.components.schemas[m[1]!], `${ref} resolves`);
    }
    for (const schema of Object.values<Doc>(doc.components.schemas)) assert.equal(schema.$schema, undefined);
  });

  it('covers every /api route the server has, with the same methods, and no route it lacks', () => {
    const routes = routesOf(s.server.app.printRoutes({ commonPrefix: false })).filter((r) =>
      r.path.startsWith('/api/'),
    );
    assert.ok(routes.length >= 14, `found ${routes.length} routes`);
    const registered = new Set<string>();
    for (const r of routes) {
      const path = r.path.replace(/:(\w+)/g, '{$1}');
      // HEAD is Fastify's automatic twin of each GET.
      for (const m of r.methods.filter((m) => m !== 'HEAD')) registered.add(`${m.toLowerCase()} ${path}`);
    }
    const documented = new Set<string>();
    for (const [path, item] of Object.entries<Record<string, Doc>>(doc.paths)) {
      if (path.startsWith('/api/')) for (const m of Object.keys(item)) documented.add(`${m} ${path}`);
    }
    assert.deepEqual(
      [...registered].filter((x) => !documented.has(x)),
      [],
      'routes without an entry in src/server/openapi/paths.ts',
    );
    assert.deepEqual(
      [...documented].filter((x) => !registered.has(x)),
      [],
      'documented routes the server does not have',
    );
  });

  it('the error shape is documented and is what an error answer is', async () => {
    const e = doc.components.schemas.Error;
    assert.deepEqual(e.required, ['error']);
    assert.deepEqual(e.properties.error.required, ['code', 'message']);
    const create = doc.paths['/api/tasks'].post;
    assert.equal(create.responses['400'].content['application/json'].schema.$ref, '#/components/schemas/Error');
    const r = await api(s.url, 'POST', '/api/tasks', { key: KEY, body: { type: 'generate', dealine_ms: 1 } });
    assert.equal(r.status, 400);
    assert.deepEqual(Object.keys(r.body), ['error']);
    for (const k of Object.keys(r.body.error)) assert.ok(k in e.properties.error.properties, k);
  });

  it('bodies are the schemas the routes parse with: the create body takes isolation and grace_ms, nothing unknown', () => {
    const body = doc.paths['/api/tasks'].post.requestBody.content['application/json'].schema;
    assert.equal(body.additionalProperties, false);
    assert.deepEqual(body.required, ['type']);
    assert.deepEqual(body.properties.isolation.enum, ['inline', 'worker', 'process']);
    assert.equal(body.properties.grace_ms.maximum, 600_000);
    const run = doc.paths['/api/threads/{id}/runs'].post.requestBody.content['application/json'].schema;
    for (const f of ['content', 'max_tokens', 'temperature', 'multitask']) assert.ok(f in run.properties, f);
    const list = doc.paths['/api/tasks'].get.parameters.find((p: Doc) => p.name === 'status');
    assert.equal(list.schema.type, 'array');
    assert.ok(list.schema.items.enum.includes('cancelling'));
    assert.equal(doc.components.schemas.Task.properties.status.enum.length, 6);
  });

  it('needs no key, and opens no hole: the API next to it still does', async () => {
    assert.equal((await api(s.url, 'GET', '/docs')).status, 200);
    assert.equal((await api(s.url, 'GET', '/api/tasks')).status, 401);
  });

  describe('/docs in Chromium', () => {
    let browser: TestBrowser;
    before(async () => {
      browser = await launchBrowser();
    });
    after(() => browser?.close());

    it('loads without console errors or failed requests and lists every operation', async () => {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      page.on('requestfailed', (r) => problems.push(`failed: ${r.url()}`));
      const res = await page.goto(`${s.url}/docs`);
      assert.equal(res?.status(), 200);
      assert.match(res?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
      assert.equal(await page.title(), 'leash API reference');
      const ops = await page.locator('section.op h3 code').allTextContents();
      for (const [path, item] of Object.entries<Record<string, Doc>>(doc.paths)) {
        assert.equal(ops.filter((o) => o === path).length, Object.keys(item).length, path);
      }
      // A schema link leads to its section.
      await page.locator('a[href="#schema-Task"]').first().click();
      assert.ok(await page.locator('#schema-Task').isVisible());
      assert.deepEqual(problems, []);
      await ctx.close();
    });
  });
});
