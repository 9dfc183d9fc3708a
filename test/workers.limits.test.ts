// Remote workers under the per-key rate limit (LEASH_RATE_LIMIT): worker frames spend
// the same budget as HTTP requests and /api/ws frames; pings do not. A flooding worker
// is told `rate_limited` and closed; what it sent unacknowledged is applied once after
// it reconnects (its attempt kept).

/* eslint-disable @typescript-eslint/no-explicit-any -- the tests read whatever JSON came back */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { RawWorker } from './helpers/python-worker.ts';
import { api, startTestServer, type TestServer } from './helpers/server.ts';

const LIMIT = 30;
let server: TestServer;

before(async () => {
  server = await startTestServer({
    apiKeys: new Map([
      ['k1', 'ann'],
      ['k2', 'bob'],
    ]),
    rateLimit: { max: LIMIT, timeWindowMs: 1500 },
    workers: { types: ['lim.t'], leaseMs: 10_000 },
  });
});
after(async () => server.close());

it('a flooding worker is told rate_limited and closed; pings spend nothing; its frames apply once after a reconnect', async () => {
  const w = new RawWorker(server.url, 'k1');
  await w.opened;
  w.send({ type: 'hello', types: ['lim.t'], slots: 1 });
  await w.next((f) => f.type === 'welcome');
  const t = await api(server.url, 'POST', '/api/tasks', { key: 'k1', body: { type: 'lim.t', input: {} } });
  const assign = await w.next((f) => f.type === 'assign');
  const { attempt, fence } = assign as { attempt: string; fence: number };
  w.send({ type: 'accept', attempt, fence });
  // Pings are liveness, not load: many of them leave the budget alone.
  for (let i = 0; i < LIMIT * 2; i++) w.send({ type: 'ping' });
  await w.next((f) => f.type === 'pong' && w.frames.filter((x) => x.type === 'pong').length === LIMIT * 2);
  assert.ok(!w.frames.some((f) => f.type === 'error'), JSON.stringify(w.frames.filter((f) => f.type === 'error')));
  // A flood of events: the frame past the budget gets `rate_limited` and the socket closes.
  for (let i = 0; i < LIMIT * 2; i++) {
    w.send({ type: 'event', id: `e${i}`, attempt, fence, kind: 'output', text: `${i},` });
  }
  const err = await w.next((f) => f.type === 'error');
  assert.equal((err.error as any).code, 'rate_limited', JSON.stringify(err));
  assert.match((err.error as any).message, /LEASH_RATE_LIMIT/);
  assert.equal(typeof (err.error as any).details.retry_after_s, 'number');
  assert.equal(err.id, undefined, 'no id: the worker keeps the frame and sends it again');
  assert.equal((await w.closed).code, 4429);
  const acked = new Set(w.frames.filter((f) => f.type === 'ack').map((f) => f.id));
  assert.ok(acked.size < LIMIT, `acked ${acked.size}`);

  // Another owner's budget is its own.
  const other = await api(server.url, 'GET', '/api/workers', { key: 'k2' });
  assert.equal(other.status, 200);

  // Past the window the worker reconnects, keeps its attempt, and re-sends what was not acknowledged.
  await new Promise((r) => setTimeout(r, 1600));
  const again = new RawWorker(server.url, 'k1');
  await again.opened;
  again.send({ type: 'hello', types: ['lim.t'], slots: 1, running: [{ attempt, fence }] });
  const welcome = await again.next((f) => f.type === 'welcome');
  assert.deepEqual(welcome.kept, [attempt]);
  for (let i = 0; i < LIMIT * 2; i++) {
    if (acked.has(`e${i}`)) continue;
    again.send({ type: 'event', id: `e${i}`, attempt, fence, kind: 'output', text: `${i},` });
    if (i % 10 === 9) await again.next((f) => f.type === 'ack' && f.id === `e${i}`, 5000);
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 1600)); // stay under the budget
  }
  again.send({ type: 'finish', id: 'fin', attempt, fence, result: { ok: true } });
  await again.next((f) => f.type === 'ack' && f.id === 'fin');
  const done = await api(server.url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`, { key: 'k1' });
  assert.equal(done.body.status, 'completed', JSON.stringify(done.body));
  const expected = Array.from({ length: LIMIT * 2 }, (_, i) => `${i},`).join('');
  assert.equal(done.body.output_text, expected, 'every event applied once, in order');
  again.close();
});
