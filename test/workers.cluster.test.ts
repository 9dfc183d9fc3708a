// Remote workers across nodes on PostgreSQL: a Python worker connected to one node
// runs tasks created on another, and a cancel sent to the other node reaches it.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminQuery, createTestDatabase, postgresSkip, type TestDatabase } from './helpers/postgres.ts';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { startPyWorker, waitForMarker, type PyWorker } from './helpers/python-worker.ts';
import { api } from './helpers/server.ts';

const skip = await postgresSkip();
let db: TestDatabase;
let dir: string;
const nodes: ServeProcess[] = [];
let worker: PyWorker | null = null;
let dynWorker: PyWorker | null = null;

async function startNode(name: string, env: Record<string, string> = {}): Promise<ServeProcess> {
  const node = await startServeProcess(name, {
    LEASH_DB: db.url,
    LEASH_NODE_ID: name,
    LEASH_LEASE_MS: '2000',
    LEASH_SHUTDOWN_GRACE_MS: '0',
    LEASH_WORKER_TYPES: 'py.echo,py.sleepy,py.blocking,py.fail,py.typed',
    ...env,
  });
  nodes.push(node);
  return node;
}

describe('remote workers on several nodes over PostgreSQL', { skip }, () => {
  before(async () => {
    db = await createTestDatabase();
    dir = await mkdtemp(join(tmpdir(), 'leash-wcluster-'));
  });
  after(async () => {
    await worker?.stop();
    await dynWorker?.stop();
    for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.exited));
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a task created on node B runs on the worker of node A; a cancel sent to B reaches the handler', async () => {
    const a = await startNode('wnode-a');
    const b = await startNode('wnode-b');
    // No worker anywhere yet: the task stays queued on both nodes.
    const early = await api(b.url, 'POST', '/api/tasks', { body: { type: 'py.echo', input: { parts: ['x'] } } });
    assert.equal(early.status, 202);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await api(b.url, 'GET', `/api/tasks/${early.body.id}`)).body.status, 'queued');

    worker = await startPyWorker(a.url);
    assert.ok(worker.id, worker.output());
    // The queued one is claimed by A once its worker is there.
    const done = await api(b.url, 'GET', `/api/tasks/${early.body.id}/wait?timeout_s=10`);
    assert.equal(done.body.status, 'completed', JSON.stringify(done.body));

    const started = join(dir, 'started');
    const marker = join(dir, 'cancelled');
    const r = await api(b.url, 'POST', '/api/tasks', { body: { type: 'py.sleepy', input: { started, marker } } });
    assert.equal(r.status, 202);
    const id = r.body.id as string;
    await waitForMarker(started);
    const rows = await adminQuery<{ node_id: string }>(db.name, 'SELECT node_id FROM tasks WHERE id = $1', [id]);
    assert.equal(rows[0]!.node_id, 'wnode-a', 'claimed by the node its worker is connected to');
    const asked = Date.now();
    const c = await api(b.url, 'POST', `/api/tasks/${id}/cancel`, {});
    assert.equal(c.status, 202);
    const m = await waitForMarker(marker);
    assert.equal(m.kind, 'CancelledError');
    assert.equal(m.reason, 'user');
    assert.ok((m.at as number) * 1000 - asked < 2000, 'the cancel crossed nodes to the worker');
    const t = await api(b.url, 'GET', `/api/tasks/${id}/wait?timeout_s=10`);
    assert.equal(t.body.status, 'cancelled');
  });

  it('types a worker declared on node A (and their input schema) are known on node B and on a node started later', async () => {
    const a = nodes[0]!;
    const b = nodes[1]!;
    // No LEASH_WORKER_TYPES names dyn.*: node B learns them from the store.
    const unknown = await api(b.url, 'POST', '/api/tasks', { body: { type: 'dyn.echo', input: {} } });
    assert.equal(unknown.body.error?.code, 'unknown_task_type');
    dynWorker = await startPyWorker(a.url, '', { WORKER_TYPE_PREFIX: 'dyn' });
    assert.ok(dynWorker.id, dynWorker.output());
    // Saved and announced right after the hello: a short wait at most.
    let r: Awaited<ReturnType<typeof api>> | null = null;
    for (let i = 0; i < 200; i++) {
      r = await api(b.url, 'POST', '/api/tasks', { body: { type: 'dyn.echo', input: { parts: ['b'] } } });
      if (r.status === 202) break;
      assert.equal(r.body.error?.code, 'unknown_task_type', JSON.stringify(r.body));
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(r!.status, 202, JSON.stringify(r!.body));
    const done = await api(b.url, 'GET', `/api/tasks/${r!.body.id}/wait?timeout_s=10`);
    assert.equal(done.body.status, 'completed', `${JSON.stringify(done.body)}\n${dynWorker.output()}`);
    // The schema declared on A checks creates on B.
    const bad = await api(b.url, 'POST', '/api/tasks', { body: { type: 'dyn.typed', input: { n: 'x' } } });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.ok(
      bad.body.error.details.some((d: { path: string }) => d.path === 'input.n'),
      JSON.stringify(bad.body),
    );
    // A node started afterwards knows them, and their schema, from the store (no
    // LEASH_WORKER_TYPES at all), and claims nothing before it does: a task made on it
    // runs on node A's worker.
    const c = await startNode('wnode-c', { LEASH_WORKER_TYPES: '' });
    const onC = await api(c.url, 'POST', '/api/tasks', { body: { type: 'dyn.echo', input: { parts: ['c'] } } });
    assert.equal(onC.status, 202, JSON.stringify(onC.body));
    const doneC = await api(c.url, 'GET', `/api/tasks/${onC.body.id}/wait?timeout_s=10`);
    assert.equal(doneC.body.status, 'completed', `${JSON.stringify(doneC.body)}\n${dynWorker.output()}`);
    const badC = await api(c.url, 'POST', '/api/tasks', { body: { type: 'dyn.typed', input: { n: 'x' } } });
    assert.equal(badC.status, 400, JSON.stringify(badC.body));
    assert.ok(
      badC.body.error.details.some((d: { path: string }) => d.path === 'input.n'),
      JSON.stringify(badC.body),
    );
  });
});
