// The reaper: a task whose deadline passes while it is still queued ends `cancelled`
// with reason `deadline` within a second of its deadline, and never starts afterwards —
// on SQLite, on PostgreSQL, and with two nodes on one PostgreSQL database. The owner's
// running limit is 1 and one slow task holds the slot, so the task can only wait.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, postgresSkip, type TestDatabase } from './helpers/postgres.ts';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { api, eventually, readSse, startTestServer, type TestServer } from './helpers/server.ts';

const SLOW = 'simulated?tps=20&tokens=1000'; // 50 s: only a cancel ends it
const QUICK = 'simulated?tps=0&tokens=3';
const DEADLINE_MS = 400;

interface Node {
  url: string;
}

async function create(node: Node, body: unknown): Promise<{ id: string; status: string }> {
  const r = await api(node.url, 'POST', '/api/tasks', { body });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body;
}

async function events(node: Node, id: string): Promise<Array<{ event: string; data: Record<string, unknown> }>> {
  const res = await fetch(`${node.url}/api/tasks/${id}/events`, { headers: { accept: 'text/event-stream' } });
  return (await readSse(res)).map((f) => ({ event: f.event, data: f.data }));
}

/**
 * `a` runs the slow task that holds the owner's only slot; the late task is created on
 * `b` (the same node, or another node of the cluster) and read back from both.
 */
async function queuedPastDeadline(a: Node, b: Node): Promise<void> {
  const slow = await create(a, { type: 'generate', input: { prompt: 'hold the slot', model: SLOW } });
  await eventually(async () => (await api(a.url, 'GET', `/api/tasks/${slow.id}`)).body.status === 'running');

  const late = await create(b, {
    type: 'generate',
    input: { prompt: 'too late', model: QUICK },
    deadline_ms: DEADLINE_MS,
  });
  assert.equal(late.status, 'queued', 'the owner’s slot is taken: it waits');

  // Ends on its own, while the slot is still taken (wall-clock bound generous; the
  // timestamps below are the real check).
  const waited = await api(b.url, 'GET', `/api/tasks/${late.id}/wait?timeout_s=10`);
  const t = waited.body;
  assert.equal(t.status, 'cancelled', JSON.stringify(t));
  assert.equal(t.cancel.reason, 'deadline');
  assert.equal(t.started_at, null, 'it never started');
  const overshoot = Date.parse(t.ended_at) - Date.parse(t.deadline_at);
  assert.ok(overshoot >= 0, `ended ${overshoot} ms before its deadline`);
  assert.ok(overshoot <= 1000, `ended ${overshoot} ms after its deadline (limit 1000)`);
  assert.equal((await api(a.url, 'GET', `/api/tasks/${slow.id}`)).body.status, 'running', 'the slot was still taken');

  const expected = [
    { event: 'task.queued', data: { task_id: late.id, seq: 1 } },
    { event: 'task.cancelled', data: { reason: 'deadline', output_text: '', task_id: late.id, seq: 2 } },
  ];
  assert.deepEqual(await events(b, late.id), expected);
  assert.deepEqual(await events(a, late.id), expected, 'every node tells the same log');

  // The slot frees: the next task runs, the expired one still never starts.
  await api(a.url, 'POST', `/api/tasks/${slow.id}/cancel`);
  await api(a.url, 'GET', `/api/tasks/${slow.id}/wait?timeout_s=10`);
  const next = await create(b, { type: 'generate', input: { prompt: 'next', model: QUICK } });
  const done = await api(b.url, 'GET', `/api/tasks/${next.id}/wait?timeout_s=10`);
  assert.equal(done.body.status, 'completed', 'the freed slot is used');
  const again = (await api(a.url, 'GET', `/api/tasks/${late.id}`)).body;
  assert.equal(again.status, 'cancelled');
  assert.equal(again.started_at, null);
  assert.deepEqual(await events(a, late.id), expected, 'nothing was appended after its end');
}

describe('reaper: queued past its deadline (SQLite)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ runtime: { maxRunningPerOwner: 1 } });
  });
  after(async () => {
    await s?.close();
  });

  it('ends cancelled (deadline) within 1 s of its deadline, with task.queued then task.cancelled, and never starts', async () => {
    await queuedPastDeadline(s, s);
  });

  it('metrics count it as a queued cancel, not as a 0 s stop', async () => {
    const text: string = (await api(s.url, 'GET', '/metrics')).body;
    assert.match(text, /^leash_cancels_total\{reason="deadline",stage="queued"\} 1$/m);
    assert.doesNotMatch(text, /leash_cancel_latency_seconds_count\{[^}]*reason="deadline"/);
  });
});

describe('reaper off: the claim alone refuses an expired task (SQLite)', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ runtime: { maxRunningPerOwner: 1, reaperIntervalMs: 3_600_000 } });
  });
  after(async () => {
    await s?.close();
  });

  it('a slot that frees after the deadline does not start it', async () => {
    const slow = await create(s, { type: 'generate', input: { prompt: 'hold', model: SLOW } });
    await eventually(async () => (await api(s.url, 'GET', `/api/tasks/${slow.id}`)).body.status === 'running');
    const late = await create(s, { type: 'generate', input: { prompt: 'late', model: QUICK }, deadline_ms: 100 });
    await new Promise((r) => setTimeout(r, 300));
    await api(s.url, 'POST', `/api/tasks/${slow.id}/cancel`);
    await api(s.url, 'GET', `/api/tasks/${slow.id}/wait?timeout_s=10`);
    const next = await create(s, { type: 'generate', input: { prompt: 'next', model: QUICK } });
    assert.equal((await api(s.url, 'GET', `/api/tasks/${next.id}/wait?timeout_s=10`)).body.status, 'completed');
    const t = (await api(s.url, 'GET', `/api/tasks/${late.id}`)).body;
    assert.equal(t.started_at, null, 'the claim skipped it');
    assert.deepEqual(
      (await s.store.listEvents(late.id, 0)).map((e) => e.type),
      ['task.queued'],
    );
  });
});

describe('reaper on PostgreSQL: one node, then two nodes', { skip: await postgresSkip() }, () => {
  let db: TestDatabase;
  const nodes: ServeProcess[] = [];
  const start = async (name: string): Promise<ServeProcess> => {
    const n = await startServeProcess(name, {
      LEASH_DB: db.url,
      LEASH_NODE_ID: name,
      LEASH_SHUTDOWN_GRACE_MS: '0',
      LEASH_MAX_RUNNING_PER_OWNER: '1',
    });
    nodes.push(n);
    return n;
  };
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGTERM');
    await Promise.all(nodes.map((n) => n.exited));
    await db?.drop();
  });

  it('one node: ends cancelled (deadline) within 1 s and never starts', async () => {
    const a = await start('reaper-a');
    await queuedPastDeadline(a, a);
  });

  it('two nodes: created on one while the other holds the owner’s slot', async () => {
    const a = nodes[0]!;
    const b = await start('reaper-b');
    await queuedPastDeadline(a, b);
    await queuedPastDeadline(b, a);
  });
});
