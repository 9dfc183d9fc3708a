// Property-based fuzzing of every REST route (and the OpenAI surface) with
// fast-check: generated methods, paths, ids, query strings, headers and bodies —
// near-valid JSON with wrong types, junk JSON, invalid JSON, invalid UTF-8, deep
// nesting, oversized bodies — and, over raw sockets, byte-level junk that no HTTP
// client would send. The promise: no 5xx, no hang, no crash, every error is JSON
// with a code and a message, nothing logged as an unexpected error, and the
// server is healthy with its registries back to zero afterwards.
//
// Runs: FUZZ_HTTP_RUNS (default 6000) through fetch + FUZZ_RAW_RUNS (default 1000)
// raw; with fuzz.ws.test.ts's 3000 frames that is 10,000 generated inputs.
// A failure prints fast-check's seed and the shrunk request; replay it with
// FUZZ_SEED=<seed>.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { api, eventually } from './helpers/server.ts';
import {
  assertErrorShape,
  assertRegistriesDrain,
  startLoggedServer,
  type LoggedServer,
} from './reliability.helpers.ts';

const HTTP_RUNS = Number(process.env.FUZZ_HTTP_RUNS ?? 6000);
const RAW_RUNS = Number(process.env.FUZZ_RAW_RUNS ?? 1000);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const REQUEST_TIMEOUT_MS = 15_000;

const KEYS = new Map([
  ['fuzz-key-alice', 'alice'],
  ['fuzz-key-bob', 'bob'],
]);

// Simulated models answer at once, whatever spec a request names.
process.env.LEASH_SIM_TPS = '0';

const ROUTES: Array<[string, string]> = [
  ['POST', '/api/tasks'],
  ['GET', '/api/tasks'],
  ['POST', '/api/tasks/cancel'],
  ['GET', '/api/tasks/:id'],
  ['DELETE', '/api/tasks/:id'],
  ['POST', '/api/tasks/:id/cancel'],
  ['GET', '/api/tasks/:id/events'],
  ['GET', '/api/tasks/:id/wait'],
  ['POST', '/api/threads'],
  ['GET', '/api/threads'],
  ['GET', '/api/threads/:id'],
  ['DELETE', '/api/threads/:id'],
  ['GET', '/api/threads/:id/messages'],
  ['POST', '/api/threads/:id/runs'],
  ['GET', '/api/ws'],
  ['GET', '/v1/models'],
  ['GET', '/v1/models/:id'],
  ['POST', '/v1/chat/completions'],
  ['POST', '/v1/responses'],
  ['GET', '/v1/responses/:id'],
  ['POST', '/v1/responses/:id/cancel'],
  ['DELETE', '/v1/responses/:id'],
  ['GET', '/healthz'],
  ['GET', '/readyz'],
  ['GET', '/metrics'],
];

const FIELDS = [
  'type',
  'input',
  'priority',
  'deadline_ms',
  'thread_id',
  'stream',
  'on_disconnect',
  'reason',
  'status',
  'created_before',
  'metadata',
  'content',
  'model',
  'multitask',
  'system',
  'messages',
  'max_tokens',
  'background',
  'previous_response_id',
  'prompt',
  'instructions',
  'max_output_tokens',
  'temperature',
  'role',
  'text',
  'chunks',
  '__proto__',
  'constructor',
  '',
];
const WORDS = [
  'generate',
  'chat',
  'analyze',
  'completion',
  'user',
  'assistant',
  'system',
  'interrupted',
  'interrupt',
  'enqueue',
  'reject',
  'rollback',
  'cancel',
  'continue',
  'simulated',
  'simulated:echo',
  'simulated?tps=0',
  'openai:x',
  'queued',
  'running',
  'completed',
  'cancelled',
  'failed',
  '2020-01-01T00:00:00Z',
  'not-a-date',
  'task_x',
  'thread_x',
  'true',
];
const QUERY_KEYS = [
  'stream',
  'after',
  'timeout_s',
  'limit',
  'cursor',
  'status',
  'type',
  'thread_id',
  'on_disconnect',
  'starting_after',
  'api_key',
];

/** Any JSON-able value that is likely wrong where it is put. */
const junk: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    {
      weight: 3,
      arbitrary: fc.constantFrom<unknown>(
        ...WORDS,
        -1,
        0,
        1,
        100,
        101,
        -101,
        2 ** 31,
        2 ** 53,
        1e308,
        -0,
        0.5,
        '',
        null,
        true,
        false,
      ),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
    { weight: 1, arbitrary: fc.integer() },
    { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
    { weight: 1, arbitrary: fc.array(tie('value'), { maxLength: 3 }) },
    { weight: 1, arbitrary: fc.dictionary(fc.constantFrom(...FIELDS), tie('value'), { maxKeys: 3 }) },
  ),
})).value;

/** Objects with the routes' field names and junk values (and sometimes valid ones). */
const nearValid: fc.Arbitrary<unknown> = fc.oneof(
  fc.dictionary(fc.constantFrom(...FIELDS), junk, { maxKeys: 6 }),
  fc.record(
    {
      type: fc.constantFrom('generate', 'chat', 'analyze', 'completion', 'nope'),
      input: fc.oneof(
        fc.dictionary(fc.constantFrom(...FIELDS), junk, { maxKeys: 4 }),
        fc.record({ prompt: fc.string({ maxLength: 30 }) }),
      ),
      stream: fc.boolean(),
      priority: junk,
      deadline_ms: junk,
    },
    { requiredKeys: ['type'] },
  ),
  fc.record(
    {
      model: fc.constantFrom('simulated', 'simulated:echo', 'nope', 'openai:'),
      messages: fc.array(
        fc.record({ role: fc.constantFrom('user', 'system', 'assistant', 'tool', 'x'), content: junk }),
        { maxLength: 3 },
      ),
      input: junk,
      stream: fc.boolean(),
      background: fc.boolean(),
      previous_response_id: junk,
      content: fc.string({ maxLength: 30 }),
      multitask: junk,
    },
    { requiredKeys: [] },
  ),
);

/** Valid requests of each route (with a little noise), so the success paths run too. */
const validish: fc.Arbitrary<unknown> = fc.oneof(
  fc.record(
    {
      type: fc.constant('generate'),
      input: fc.record({ prompt: fc.string({ minLength: 1, maxLength: 20 }) }),
      stream: fc.boolean(),
      deadline_ms: fc.integer({ min: 1, max: 60_000 }),
      priority: fc.integer({ min: -100, max: 100 }),
      on_disconnect: fc.constantFrom('cancel', 'continue'),
    },
    { requiredKeys: ['type', 'input'] },
  ),
  fc.record(
    {
      content: fc.string({ minLength: 1, maxLength: 20 }),
      multitask: fc.constantFrom('interrupt', 'enqueue', 'reject', 'rollback'),
      stream: fc.boolean(),
    },
    { requiredKeys: ['content'] },
  ),
  fc.record(
    {
      model: fc.constantFrom('simulated', 'simulated:echo'),
      messages: fc.constant([{ role: 'user', content: 'hi' }]),
      stream: fc.boolean(),
    },
    { requiredKeys: ['model', 'messages'] },
  ),
  fc.record(
    {
      model: fc.constant('simulated'),
      input: fc.string({ minLength: 1, maxLength: 10 }),
      stream: fc.boolean(),
      background: fc.boolean(),
    },
    { requiredKeys: ['model', 'input'] },
  ),
  fc.record(
    { reason: fc.constantFrom('user', 'batch', 'interrupted'), status: fc.constantFrom(['queued'], ['running']) },
    { requiredKeys: [] },
  ),
);

type Body = string | Uint8Array | undefined;

const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 10, arbitrary: nearValid.map((v) => JSON.stringify(v)) },
  { weight: 4, arbitrary: validish.map((v) => JSON.stringify(v)) },
  { weight: 3, arbitrary: fc.json({ maxDepth: 3 }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 60 }) }, // mostly invalid JSON
  { weight: 2, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }) }, // invalid UTF-8 too
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.constantFrom(
          '',
          '{"metadata":{"m":',
          '{"type":"generate","input":',
          '{"model":"simulated","input":',
          '{"content":"x","metadata":',
        ),
        fc.integer({ min: 1, max: 150_000 }),
        fc.constantFrom('[', '{"a":'),
      )
      .map(([prefix, n, open]) => {
        const close = '}'.repeat((prefix.match(/\{/g) ?? []).length);
        return prefix + open.repeat(n) + '1' + (open === '[' ? ']' : '}').repeat(n) + close;
      }),
  },
  // Valid UTF-8 prefix, then a lone continuation byte and a truncated sequence.
  {
    weight: 1,
    arbitrary: fc
      .string({ maxLength: 20 })
      .map((s) =>
        Buffer.concat([
          Buffer.from(`{"type":"generate","input":{"prompt":"${s}`),
          Buffer.from([0x80, 0xe2, 0x82]),
          Buffer.from('"}}'),
        ]),
      ),
  },
);

/** Printable ASCII only: fetch refuses other header bytes (the raw-socket property sends those). */
const headerText = fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, '').trim());

const idArb: fc.Arbitrary<(known: string[]) => string> = fc.oneof(
  { weight: 4, arbitrary: fc.nat().map((i) => (known: string[]) => encodeURIComponent(known[i % known.length]!)) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }).map((s) => () => encodeURIComponent(s)) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('%', '%zz', '%E0%A4%A', '%C0%AF', '%FF', '..', '%2e%2e%2f', '%00', 'x'.repeat(300), '%20', '.', '~')
      .map((s) => () => s),
  },
);

interface FuzzRequest {
  method: string;
  path: (known: string[]) => string;
  query: string;
  headers: Record<string, string>;
  body: Body;
}

const requestArb: fc.Arbitrary<FuzzRequest> = fc
  .record({
    route: fc.oneof(
      { weight: 10, arbitrary: fc.constantFrom(...ROUTES) },
      {
        weight: 1,
        arbitrary: fc.tuple(
          fc.constantFrom('GET', 'POST'),
          fc.constantFrom(
            '/api',
            '/v1',
            '/api/tasks/',
            '/api//tasks',
            '/API/TASKS',
            '/api/tasks/a/b/c',
            '/v1/nope',
            '/',
            '/x',
          ),
        ),
      },
    ),
    otherMethod: fc.oneof(
      { weight: 6, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS') },
    ),
    id: idArb,
    query: fc.array(
      fc.tuple(
        fc.oneof(fc.constantFrom(...QUERY_KEYS), fc.string({ maxLength: 8 })),
        fc.oneof(
          fc.constantFrom('true', '1', '0', '-1', '1e309', 'NaN', '', '300', '0.001', 'queued,running', 'completed'),
          fc.string({ maxLength: 20 }),
        ),
      ),
      { maxLength: 4 },
    ),
    auth: fc.oneof(
      { weight: 16, arbitrary: fc.constant<string | null>('Bearer fuzz-key-alice') },
      { weight: 4, arbitrary: fc.constant<string | null>('Bearer fuzz-key-bob') },
      {
        weight: 2,
        arbitrary: fc.constantFrom<string | null>(
          null,
          'Bearer wrong',
          'Basic YTpi',
          'Bearer',
          'bearer  ',
          'Bearer a b',
          'Token x',
        ),
      },
    ),
    contentType: fc.oneof(
      { weight: 8, arbitrary: fc.constant('application/json') },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          'text/plain',
          'application/json; charset=latin1',
          'application/x-www-form-urlencoded',
          'multipart/form-data; boundary=x',
          'application/octet-stream',
          '',
          'application/json, text/plain',
        ),
      },
      { weight: 1, arbitrary: headerText },
    ),
    accept: fc.oneof(
      { weight: 4, arbitrary: fc.constant(null) },
      {
        weight: 1,
        arbitrary: fc.constantFrom('text/event-stream', 'application/json', '*/*', 'text/event-stream;q=0'),
      },
    ),
    extra: fc.dictionary(
      fc.constantFrom('idempotency-key', 'last-event-id', 'x-request-id', 'openai-beta'),
      headerText,
      { maxKeys: 2 },
    ),
    body: bodyArb,
  })
  .map((r) => {
    const method = r.otherMethod ?? r.route[0];
    const template = r.route[1];
    const headers: Record<string, string> = { ...r.extra };
    if (r.auth !== null) headers.authorization = r.auth;
    if (r.contentType !== '') headers['content-type'] = r.contentType;
    if (r.accept !== null) headers.accept = r.accept;
    const query = r.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    const bodyAllowed = method !== 'GET' && method !== 'HEAD';
    return {
      method,
      path: (known: string[]) => template.replace(':id', r.id(known)),
      query,
      headers,
      body: bodyAllowed ? r.body : undefined,
    };
  });

/** Big bodies are generated rarely (a few per run) so the run stays quick. */
const oversized = fc.record({
  size: fc.integer({ min: 1024 * 1024 + 1, max: 3 * 1024 * 1024 }),
  route: fc.constantFrom('/api/tasks', '/api/threads', '/v1/responses', '/v1/chat/completions', '/api/tasks/cancel'),
});

describe('HTTP fuzzing', () => {
  let s: LoggedServer;
  /** Real ids (tasks, threads, another owner's) so that routes get past "not found" too. */
  const known: string[] = [];
  const stats = { requests: 0, byStatus: new Map<number, number>() };

  before(async () => {
    s = await startLoggedServer({
      apiKeys: KEYS,
      model: 'simulated?tps=0&tokens=5',
      level: 'warn',
      sseKeepaliveMs: 1000,
      runtime: { maxQueuedPerOwner: 200, maxRunningPerOwner: 8 },
    });
    const key = 'fuzz-key-alice';
    const task = await api(s.url, 'POST', '/api/tasks', { key, body: { type: 'generate', input: { prompt: 'seed' } } });
    const thread = await api(s.url, 'POST', '/api/threads', { key, body: {} });
    const run = await api(s.url, 'POST', `/api/threads/${thread.body.id}/runs`, { key, body: { content: 'hi' } });
    const bobs = await api(s.url, 'POST', '/api/tasks', {
      key: 'fuzz-key-bob',
      body: { type: 'generate', input: { prompt: 'bob' } },
    });
    for (const id of [task.body.id, run.body.id, bobs.body.id]) {
      await eventually(
        async () => (await s.runtime.get(id, id === bobs.body.id ? 'bob' : 'alice'))?.status === 'completed',
      );
    }
    known.push(task.body.id, thread.body.id, run.body.id, bobs.body.id, 'task_doesnotexist');
  });
  after(async () => {
    const counts = [...stats.byStatus]
      .sort((a, b) => a[0] - b[0])
      .map(([k, v]) => `${k}:${v}`)
      .join(' ');
    console.log(`# fuzz.http: ${stats.requests} requests; statuses ${counts}`);
    await s.close();
  });

  async function send(req: FuzzRequest): Promise<void> {
    const path = req.path(known);
    const url = `${s.url}${path}${req.query === '' ? '' : `?${req.query}`}`;
    const what = `${req.method} ${url.slice(s.url.length, s.url.length + 200)}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: req.method,
        headers: req.headers,
        redirect: 'manual',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        ...(req.body !== undefined && { body: req.body as BodyInit }),
      });
    } catch (err) {
      // A URL fetch itself refuses is not a request the server saw.
      if (err instanceof TypeError && !/fetch failed/.test(err.message)) return;
      throw new Error(`${what}: no answer (${(err as Error).message}; ${String((err as Error).cause)})`);
    }
    const text = await res.text();
    stats.requests++;
    stats.byStatus.set(res.status, (stats.byStatus.get(res.status) ?? 0) + 1);
    assert.ok(res.status < 500, `${what}: ${res.status} ${text.slice(0, 300)}`);
    const type = res.headers.get('content-type');
    let body: unknown = text;
    if ((type ?? '').includes('application/json') && req.method !== 'HEAD') {
      try {
        body = JSON.parse(text);
      } catch {
        assert.fail(`${what}: ${res.status} says JSON but is not: ${text.slice(0, 200)}`);
      }
    }
    if (res.status >= 400 && req.method !== 'HEAD') assertErrorShape(res.status, type, body, what);
  }

  it(`${HTTP_RUNS} generated requests: no 5xx, every error JSON with a code`, async () => {
    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => send(req)),
      { numRuns: HTTP_RUNS, ...(SEED !== undefined && { seed: SEED }) },
    );
  });

  it('oversized bodies: 413 payload_too_large', async () => {
    await fc.assert(
      fc.asyncProperty(oversized, async ({ size, route }) => {
        const r = await api(s.url, 'POST', route, {
          key: 'fuzz-key-alice',
          rawBody: '"' + 'x'.repeat(size) + '"',
          headers: { 'content-type': 'application/json' },
        });
        assert.equal(r.status, 413, route);
        assertErrorShape(r.status, r.headers.get('content-type'), r.body, route);
      }),
      { numRuns: 6, ...(SEED !== undefined && { seed: SEED }) },
    );
  });

  it('deep JSON (100,000 levels) on every JSON route: 400 invalid_json, never a stack overflow', async () => {
    const n = 100_000;
    const deepArr = '['.repeat(n) + ']'.repeat(n);
    const deepObj = '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    const cases: Array<[string, string]> = [
      ['/api/tasks', `{"type":"generate","input":${deepObj}}`],
      ['/api/tasks/cancel', `{"status":${deepArr}}`],
      ['/api/threads', `{"metadata":{"m":${deepArr}}}`],
      ['/api/threads', `{"metadata":{"m":${deepObj}}}`],
      ['/v1/responses', `{"model":"simulated","input":${deepArr}}`],
      ['/v1/chat/completions', `{"model":"simulated","messages":${deepArr}}`],
    ];
    for (const [path, body] of cases) {
      const r = await api(s.url, 'POST', path, {
        key: 'fuzz-key-alice',
        rawBody: body,
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(r.status, 400, `${path}: ${JSON.stringify(r.body).slice(0, 200)}`);
      assert.equal(r.body.error.code, 'invalid_json');
    }
    // Depth that real clients use is fine.
    const ok = await api(s.url, 'POST', '/api/threads', {
      key: 'fuzz-key-alice',
      body: { metadata: { m: JSON.parse('['.repeat(100) + ']'.repeat(100)) } },
    });
    assert.equal(ok.status, 201);
  });

  it(`${RAW_RUNS} raw byte-level requests: every answer is a JSON error or a success, never a 5xx`, async () => {
    await fc.assert(
      fc.asyncProperty(rawRequestArb, async ({ bytes, isHead }) => {
        const text = await rawRoundTrip(s.port, bytes);
        stats.requests++;
        if (text === '') return; // the parser may close a connection it cannot read at all
        const res = parseFirstResponse(text, isHead);
        const what = `raw ${JSON.stringify(bytes.toString('latin1').slice(0, 160))}`;
        assert.ok(res.status < 500, `${what}: ${res.status} ${res.body.slice(0, 200)}`);
        if (res.status >= 400 && !res.head) {
          let body: unknown;
          try {
            body = JSON.parse(res.body);
          } catch {
            assert.fail(`${what}: ${res.status} body is not JSON: ${res.body.slice(0, 200)}`);
          }
          assertErrorShape(res.status, res.contentType, body, what);
        }
      }),
      { numRuns: RAW_RUNS, ...(SEED !== undefined && { seed: SEED }) },
    );
  });

  it('afterwards: healthy, registries back to zero, nothing logged as an unexpected error', async () => {
    assert.equal((await api(s.url, 'GET', '/healthz')).status, 200);
    assert.equal((await api(s.url, 'GET', '/readyz')).status, 200);
    const ok = await api(s.url, 'POST', '/api/tasks', {
      key: 'fuzz-key-alice',
      body: { type: 'generate', input: { prompt: 'after' } },
    });
    assert.equal(ok.status, 202);
    await eventually(async () => (await s.runtime.get(ok.body.id, 'alice'))?.status === 'completed');
    await assertRegistriesDrain(s.runtime);
    const errors = s.logsAtLeast(50);
    assert.deepEqual(
      errors.map((e) => e.msg),
      [],
      'no error-level log lines',
    );
  });
});

// ── raw sockets ─────────────────────────────────────────────────────────────
const byteString = (maxLength: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const rawPath: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constantFrom(...ROUTES.map(([, p]) => p.replace(':id', 'task_x'))).map((p) => Buffer.from(p)),
  fc
    .tuple(fc.constantFrom('/api/tasks/', '/api/threads/', '/v1/responses/', '/'), byteString(24))
    .map(([p, b]) => Buffer.concat([Buffer.from(p), b])),
  fc
    .constantFrom('*', 'http://x/api/tasks', '', '//', '/api/tasks?%', '/api/tasks#frag', '/%ff%fe')
    .map((p) => Buffer.from(p)),
);
const rawHeaderLine: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .constantFrom(
      'Content-Type: application/json',
      'Content-Length: 5',
      'Content-Length: -1',
      'Content-Length: 99999999999999999999',
      'Transfer-Encoding: chunked',
      'Transfer-Encoding: gzip, chunked',
      'Transfer-Encoding: identity',
      'Authorization: Bearer fuzz-key-alice',
      'Authorization: Bearer fuzz-key-alice',
      'Authorization: Bearer fuzz-key-bob',
      'Authorization: Bearer \x00',
      'Connection: close',
      'Connection: keep-alive',
      'Expect: 100-continue',
      'Host: x',
      'Host:',
      'Accept: text/event-stream',
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==',
      'Last-Event-ID: 1',
      'Idempotency-Key: k',
      ' folded: line',
      'No-Colon',
      ': empty-name',
    )
    .map((h) => Buffer.from(h)),
  fc
    .tuple(fc.string({ maxLength: 10 }), byteString(20))
    .map(([n, v]) => Buffer.concat([Buffer.from(`X-${n.replace(/[^A-Za-z0-9-]/g, '')}: `), v])),
);
const rawRequestArb: fc.Arbitrary<{ bytes: Buffer; isHead: boolean }> = fc
  .record({
    method: fc.oneof(
      fc.constantFrom(
        'GET',
        'POST',
        'DELETE',
        'PUT',
        'HEAD',
        'OPTIONS',
        'PATCH',
        'CONNECT',
        'TRACE',
        'get',
        'G ET',
        '',
      ),
      fc.string({ maxLength: 6 }),
    ),
    path: rawPath,
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 extra', 'http/1.1', ''),
    headers: fc.array(rawHeaderLine, { maxLength: 6 }),
    eol: fc.constantFrom('\r\n', '\r\n', '\n', '\r'),
    body: fc.oneof(
      byteString(64),
      fc
        .constantFrom('{"type":"generate","input":{"prompt":"raw"}}', '5\r\nhello\r\n0\r\n\r\n', 'zz\r\nxx\r\n', '{}')
        .map((b) => Buffer.from(b)),
    ),
  })
  .map((r) => {
    const eol = Buffer.from(r.eol);
    const lines: Buffer[] = [
      Buffer.concat([Buffer.from(`${r.method} `), r.path, Buffer.from(` ${r.version}`)]),
      ...r.headers,
    ];
    const parts: Buffer[] = [];
    for (const l of lines) parts.push(l, eol);
    parts.push(eol, r.body);
    return { bytes: Buffer.concat(parts), isHead: r.method === 'HEAD' };
  });

/** Sends the bytes, half-closes, and reads until the server closes (bounded). */
function rawRoundTrip(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(
        new Error(
          `raw request not answered nor closed within 10 s: ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`,
        ),
      );
    }, 10_000);
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (text += d));
    sock.on('error', () => {}); // a reset after the answer is fine
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    sock.on('connect', () => sock.end(bytes));
  });
}

function parseFirstResponse(
  text: string,
  isHead: boolean,
): { status: number; contentType: string | null; body: string; head: boolean } {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  assert.ok(m, `not an HTTP response: ${JSON.stringify(text.slice(0, 120))}`);
  const end = text.indexOf('\r\n\r\n');
  const head = text.slice(0, end);
  const headers = new Map<string, string>();
  for (const line of head.split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  let body = text.slice(end + 4);
  const len = headers.get('content-length');
  if (len !== undefined) body = body.slice(0, Number(len));
  else if ((headers.get('transfer-encoding') ?? '').includes('chunked')) body = dechunk(body);
  // A HEAD answer, a 1xx (101 included) or a 204 has no body to check.
  const status = Number(m[1]);
  const noBody = isHead || status < 200 || status === 204 || status === 304;
  return { status, contentType: headers.get('content-type') ?? null, body, head: noBody };
}

function dechunk(s: string): string {
  let out = '';
  let i = 0;
  for (;;) {
    const eol = s.indexOf('\r\n', i);
    if (eol < 0) return out;
    const n = parseInt(s.slice(i, eol), 16);
    if (!Number.isFinite(n) || n === 0) return out;
    out += s.slice(eol + 2, eol + 2 + n);
    i = eol + 2 + n + 2;
  }
}
