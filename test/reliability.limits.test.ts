// Limits that protect the server from its clients: per-key rate limiting (429 with
// Retry-After) and slow or malformed connections (slowloris headers and bodies,
// oversized headers, bytes that are not HTTP), each answered in leash's JSON error
// shape — while streams and long polls, which outlive those deadlines, are not cut.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { sleep } from '../src/core/cancel.ts';
import { rateLimitFromEnv, UsageError } from '../src/cli/serve.ts';
import { parseRateLimit } from '../src/server/rate-limit.ts';
import { api, readSse, startTestServer, type TestServer } from './helpers/server.ts';

const KEYS = new Map([
  ['key-alice', 'alice'],
  ['key-bob', 'bob'],
]);

describe('rate limiting per API key', () => {
  let s: TestServer;
  const MAX = 5;
  before(async () => {
    s = await startTestServer({ apiKeys: KEYS, rateLimit: { max: MAX, timeWindowMs: 60_000 } });
  });
  after(() => s.close());

  it('past the limit: 429 rate_limited with Retry-After; other keys, bad keys and probes are unaffected', async () => {
    // Wrong keys are refused by auth before any counter: they can't spend alice's budget.
    for (let i = 0; i < MAX + 2; i++) {
      assert.equal((await api(s.url, 'GET', '/api/tasks', { key: 'key-alice-wrong' })).status, 401);
    }
    const seen: number[] = [];
    for (let i = 0; i < MAX; i++) {
      const r = await api(s.url, 'GET', '/api/tasks', { key: 'key-alice' });
      seen.push(r.status);
      assert.equal(r.headers.get('x-ratelimit-limit'), String(MAX));
    }
    assert.deepEqual(seen, Array(MAX).fill(200));
    // Any route counts, the unmatched ones too.
    const over = await api(s.url, 'POST', '/api/tasks', {
      key: 'key-alice',
      body: { type: 'generate', input: { prompt: 'x' } },
    });
    assert.equal(over.status, 429);
    assert.equal(over.body.error.code, 'rate_limited');
    assert.match(over.body.error.message, /5 requests per 60 s/);
    const retryAfter = Number(over.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.equal(over.body.error.details.retry_after_s, retryAfter);
    assert.equal((await api(s.url, 'GET', '/api/nope', { key: 'key-alice' })).status, 429);
    assert.equal((await api(s.url, 'GET', '/v1/models', { key: 'key-alice' })).status, 429);
    // No task was created by the refused POST.
    const bob = await api(s.url, 'GET', '/api/tasks', { key: 'key-bob' });
    assert.equal(bob.status, 200);
    for (const p of ['/healthz', '/readyz', '/metrics']) {
      for (let i = 0; i < MAX + 1; i++) assert.equal((await api(s.url, 'GET', p, { key: 'key-alice' })).status, 200, p);
    }
    assert.equal((await s.store.countByStatus()).queued + (await s.store.countByStatus()).completed, 0);
  });

  it('the web UI, served without a key, is limited per client address, apart from the keys', async () => {
    const ui: number[] = [];
    const page = { headers: { accept: 'text/html' } };
    for (let i = 0; i < MAX + 1; i++) ui.push((await api(s.url, 'GET', '/some/page', page)).status);
    assert.equal(ui.at(-1), 429);
    assert.ok(
      ui.slice(0, MAX).every((st) => st !== 429),
      ui.join(','),
    );
    // bob's key budget is not the address's.
    assert.equal((await api(s.url, 'GET', '/api/tasks', { key: 'key-bob' })).status, 200);
  });

  it('LEASH_RATE_LIMIT parsing: integer per minute, "off"/0/unset = none, junk is a usage error', () => {
    assert.deepEqual(parseRateLimit('600'), { max: 600 });
    assert.deepEqual(parseRateLimit(' 12 '), { max: 12 });
    for (const off of [undefined, '', '0', 'off', 'OFF']) assert.equal(parseRateLimit(off), undefined);
    for (const bad of ['-1', '1.5', 'ten', '600/min', '1e3']) {
      assert.throws(() => parseRateLimit(bad), /LEASH_RATE_LIMIT/);
      assert.throws(() => rateLimitFromEnv({ LEASH_RATE_LIMIT: bad }), UsageError);
    }
    assert.deepEqual(rateLimitFromEnv({ LEASH_RATE_LIMIT: '100' }), { max: 100 });
  });
});

/** Writes `chunks` to a raw socket `gapMs` apart; resolves with everything read and the time the server closed it. */
async function rawExchange(
  port: number,
  chunks: string[],
  gapMs: number,
  maxMs = 10_000,
): Promise<{ text: string; closedAfterMs: number; wroteAll: boolean }> {
  const sock = connect(port, '127.0.0.1');
  const started = performance.now();
  let text = '';
  let closed = false;
  sock.setEncoding('latin1');
  sock.on('data', (d: string) => (text += d));
  sock.on('error', () => {});
  const closedP = new Promise<number>((resolve) =>
    sock.on('close', () => ((closed = true), resolve(performance.now() - started))),
  );
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  let wroteAll = true;
  for (const c of chunks) {
    if (closed) {
      wroteAll = false;
      break;
    }
    sock.write(c);
    if (gapMs > 0) await sleep(gapMs);
  }
  const closedAfterMs = await Promise.race([closedP, sleep(maxMs).then(() => -1)]);
  sock.destroy();
  return { text, closedAfterMs, wroteAll };
}

function parseRaw(text: string): { status: number; body: { error?: { code?: unknown; message?: unknown } } } {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  assert.ok(m, `an HTTP response, got ${JSON.stringify(text.slice(0, 120))}`);
  const sep = text.indexOf('\r\n\r\n');
  return { status: Number(m[1]), body: JSON.parse(text.slice(sep + 4)) };
}

describe('slow and malformed connections', () => {
  let s: TestServer;
  let port: number;
  // Short deadlines so the test is quick; production defaults are in src/server/timeouts.ts.
  const HEADERS_MS = 600;
  const REQUEST_MS = 1200;
  before(async () => {
    s = await startTestServer({
      sseKeepaliveMs: 200,
      timeouts: { headersMs: HEADERS_MS, requestMs: REQUEST_MS, checkIntervalMs: 100 },
      model: 'simulated?tps=20&tokens=60',
    });
    port = Number(new URL(s.url).port);
  });
  after(() => s.close());

  it('headers that trickle in (slowloris): 408 request_timeout, connection closed', async () => {
    const lines = [
      'GET /api/tasks HTTP/1.1\r\n',
      'Host: 127.0.0.1\r\n',
      ...Array.from({ length: 40 }, (_, i) => `X-Slow-${i}: y\r\n`),
      '\r\n',
    ];
    const r = await rawExchange(port, lines, 100);
    assert.equal(r.wroteAll, false, 'the server must cut the connection before the headers end');
    assert.ok(r.closedAfterMs > 0, 'connection closed by the server');
    const res = parseRaw(r.text);
    assert.equal(res.status, 408);
    assert.equal(res.body.error?.code, 'request_timeout');
  });

  it('a connection that sends nothing is closed too', async () => {
    const r = await rawExchange(port, [], 0);
    assert.ok(r.closedAfterMs > 0 && r.closedAfterMs < 8000, `closed after ${r.closedAfterMs} ms`);
  });

  it('a body that trickles in: 408 request_timeout, no task created', async () => {
    const body = JSON.stringify({ type: 'generate', input: { prompt: 'slow body '.repeat(10) } });
    const head = `POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const chunks = [head, ...body.match(/.{1,4}/g)!];
    const r = await rawExchange(port, chunks, 100);
    assert.equal(r.wroteAll, false);
    const res = parseRaw(r.text);
    assert.equal(res.status, 408);
    assert.equal(res.body.error?.code, 'request_timeout');
    assert.equal((await s.runtime.list({ owner: 'local' })).data.length, 0);
  });

  it('headers over 16 KiB: 431 headers_too_large; bytes that are not HTTP: 400 invalid_request', async () => {
    const huge = await rawExchange(
      port,
      [`GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`],
      0,
    );
    const h = parseRaw(huge.text);
    assert.equal(h.status, 431);
    assert.equal(h.body.error?.code, 'headers_too_large');
    for (const junk of [
      '\x00\x01\x02garbage\r\n\r\n',
      'GET / HTTP/9.9\r\n\r\n',
      'GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n',
      'POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n',
    ]) {
      const r = parseRaw((await rawExchange(port, [junk], 0)).text);
      assert.equal(r.status, 400, JSON.stringify(junk));
      assert.equal(r.body.error?.code, 'invalid_request');
      assert.equal(typeof r.body.error?.message, 'string');
    }
    assert.equal((await api(s.url, 'GET', '/healthz')).status, 200);
  });

  it('streams and long polls are not cut by those deadlines', async () => {
    const created = await api(s.url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt: 'long' } } });
    assert.equal(created.status, 202);
    const id = created.body.id as string;
    const t0 = performance.now();
    const [frames, waited] = await Promise.all([
      fetch(`${s.url}/api/tasks/${id}/events`).then((res) => readSse(res)),
      api(s.url, 'GET', `/api/tasks/${id}/wait?timeout_s=60`),
    ]);
    const took = performance.now() - t0;
    assert.ok(took > REQUEST_MS * 2, `the task ran for ${Math.round(took)} ms, past the request deadline`);
    assert.equal(frames.at(-1)?.event, 'task.completed');
    assert.equal(waited.status, 200);
    assert.equal(waited.body.status, 'completed');
  });
});
