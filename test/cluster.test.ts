// Several real `leash serve` processes over one PostgreSQL database: a cancel sent to
// any node stops the handler wherever it runs, any node streams any task's events in
// order and resumably, a node killed with SIGKILL loses its tasks to the others
// within the lease, and a node stopped with SIGTERM hands its work back.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { adminQuery, createTestDatabase, postgresSkip, type TestDatabase } from './helpers/postgres.ts';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { api, eventually, readSse, type SseFrame } from './helpers/server.ts';
import { SEQ_AHEAD } from '../src/store/store.ts';

const LEASE_MS = 2000;
const SLOW = 'simulated?tps=20&tokens=1000'; // 50 s of output: only a cancel ends it in time

const skip = await postgresSkip();
let db: TestDatabase;
const nodes: LeashNode[] = [];

type LeashNode = ServeProcess;

async function startNode(name: string, env: Record<string, string> = {}): Promise<LeashNode> {
  const node = await startServeProcess(name, {
    LEASH_DB: db.url,
    LEASH_NODE_ID: name,
    LEASH_LEASE_MS: String(LEASE_MS),
    LEASH_SHUTDOWN_GRACE_MS: '0',
    LEASH_MAX_RUNNING_PER_OWNER: '100',
    ...env,
  });
  nodes.push(node);
  return node;
}

async function create(node: LeashNode, body: unknown): Promise<string> {
  const r = await api(node.url, 'POST', '/api/tasks', { body });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body.id as string;
}

/** Which node runs the task (from the database: the API does not expose it). */
async function runningOn(id: string): Promise<string | null> {
  const rows = await adminQuery<{ node_id: string | null; status: string }>(
    db.name,
    'SELECT node_id, status FROM tasks WHERE id = $1',
    [id],
  );
  const r = rows[0];
  return r && (r.status === 'running' || r.status === 'cancelling') ? r.node_id : null;
}

function sse(node: LeashNode, id: string, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
  return fetch(`${node.url}/api/tasks/${id}/events`, { headers: { accept: 'text/event-stream', ...headers }, signal });
}

/** Seqs from `from` on, one by one; the one skip allowed is recovery's, which names the last stored seq. */
function assertInOrder(frames: SseFrame[], from: number): void {
  frames.forEach((f, i) => {
    const prev = i === 0 ? from - 1 : frames[i - 1]!.id!;
    if (f.id === prev + 1) return;
    assert.equal(f.id, prev + SEQ_AHEAD + 1, `frame ${i} has seq ${f.id}, expected ${prev + 1}`);
    assert.equal(f.data.last_durable_seq, prev, `frame ${i} (${f.event}) is recovery's, naming seq ${prev}`);
  });
}

describe('cluster: several leash serve nodes over one PostgreSQL', { skip }, () => {
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.exited));
    await db?.drop();
  });

  it('SIGTERM: the node stops at once, its tasks are cancelled or handed back, and the others take the work', async () => {
    // D alone, two slots: a resumable analyze and a generate run on it, two more wait.
    const d = await startNode('node-d', { LEASH_CONCURRENCY: '2' });
    const doc = Array.from({ length: 10 }, (_, i) => `Section ${i}: ${'lorem ipsum '.repeat(20)}`).join('\n');
    const analyzeId = await create(d, {
      type: 'analyze',
      input: { document: doc, chunk_size: 250, model: 'simulated?tps=40&tokens=12' },
    });
    const slowId = await create(d, { type: 'generate', input: { prompt: 'x', model: SLOW } });
    const waiting = [
      await create(d, { type: 'generate', input: { prompt: 'a', model: 'simulated?tps=0&tokens=3' } }),
      await create(d, { type: 'generate', input: { prompt: 'b', model: 'simulated?tps=0&tokens=3' } }),
    ];
    await eventually(async () => (await runningOn(analyzeId)) === 'node-d' && (await runningOn(slowId)) === 'node-d');
    // Wait for a checkpoint (two chunks done) so the resume has something to resume from.
    await eventually(async () => {
      const r = await adminQuery<{ cp: { done: number } | null }>(
        db.name,
        'SELECT checkpoint AS cp FROM tasks WHERE id = $1',
        [analyzeId],
      );
      return (r[0]?.cp?.done ?? 0) >= 2;
    });
    for (const id of waiting) assert.equal((await api(d.url, 'GET', `/api/tasks/${id}`)).body.status, 'queued');

    d.proc.kill('SIGTERM');
    assert.equal(await d.exited, 0, d.stderr());
    const rows = await adminQuery<{ id: string; status: string; node_id: string | null; cancel_reason: string | null }>(
      db.name,
      'SELECT id, status, node_id, cancel_reason FROM tasks',
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    assert.deepEqual(
      rows.filter((r) => r.status === 'running' || r.status === 'cancelling'),
      [],
      'nothing is left running on the stopped node',
    );
    assert.equal(byId.get(slowId)!.status, 'cancelled');
    assert.equal(byId.get(slowId)!.cancel_reason, 'shutdown');
    assert.equal(byId.get(analyzeId)!.status, 'queued', 'the resumable task was handed back to the queue');
    for (const id of waiting) assert.equal(byId.get(id)!.status, 'queued');

    // Another node takes all of it; the analyze resumes from its checkpoint.
    const a = await startNode('node-a');
    for (const id of [...waiting, analyzeId]) {
      const w = await api(a.url, 'GET', `/api/tasks/${id}/wait?timeout_s=20`);
      assert.equal(w.body.status, 'completed', JSON.stringify(w.body));
    }
    const list = await readSse(await sse(a, analyzeId, {}, AbortSignal.timeout(10_000)));
    assertInOrder(list, 1);
    const starts = list.filter((e) => e.event === 'task.started');
    assert.deepEqual(
      starts.map((e) => e.data.attempt),
      [1, 2],
    );
    const afterResume = list.slice(list.indexOf(starts[1]!));
    const firstPart = afterResume.find((e) => e.event === 'output.delta' && /^## Part \d+/.test(e.data.text));
    assert.ok(firstPart, 'the second attempt wrote parts');
    assert.ok(Number(/^## Part (\d+)/.exec(firstPart.data.text)![1]) >= 3, `resumed at ${firstPart.data.text.trim()}`);
    const result = (await api(a.url, 'GET', `/api/tasks/${analyzeId}`)).body.result;
    assert.equal(result.chunks, result.findings.length);
  });

  it('a cancel sent to one node stops the handler on the node running it; SSE on another node follows in order and resumes', async () => {
    const b = await startNode('node-b');
    const a = nodes.find((n) => n.name === 'node-a')!;
    const id = await create(a, { type: 'generate', input: { prompt: 'stream me', model: SLOW } });
    const runner = await eventually(() => runningOn(id));
    const runNode = nodes.find((n) => n.name === runner)!;
    const other = runNode === a ? b : a;

    // Stream from the node that does not run it; stop after a few deltas.
    const ac1 = new AbortController();
    const first = await readSse(await sse(other, id, {}, ac1.signal), {
      until: (_f, all) => all.filter((x) => x.event === 'output.delta').length >= 5,
    });
    ac1.abort();
    assertInOrder(first, 1);
    assert.deepEqual(
      first.slice(0, 2).map((f) => f.event),
      ['task.queued', 'task.started'],
    );
    const lastSeen = first.at(-1)!.id!;

    // Resume on the same other node with Last-Event-ID; then cancel through it too.
    const ac2 = new AbortController();
    const resumed = readSse(await sse(other, id, { 'last-event-id': String(lastSeen) }, ac2.signal));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const c = await api(other.url, 'POST', `/api/tasks/${id}/cancel`);
    assert.ok(c.status === 200 || c.status === 202, JSON.stringify(c.body));
    const rest = await resumed;
    const stopMs = Date.now() - t0;
    assertInOrder(rest, lastSeen + 1);
    const types = rest.map((f) => f.event);
    assert.equal(types.at(-1), 'task.cancelled');
    assert.ok(types.includes('task.cancelling'));
    assert.equal(rest.at(-1)!.data.reason, 'user');
    // Generous bound: the notification path takes milliseconds; even the lease-renewal backstop is under a second.
    assert.ok(stopMs < 5000, `cancel took ${stopMs} ms`);

    // The handler really stopped: the output does not grow any more, on any node.
    const t1 = (await api(runNode.url, 'GET', `/api/tasks/${id}`)).body;
    assert.equal(t1.status, 'cancelled');
    await new Promise((r) => setTimeout(r, 300));
    const t2 = (await api(other.url, 'GET', `/api/tasks/${id}`)).body;
    assert.equal(t2.output_text, t1.output_text);
    assert.ok(t1.output_text.length > 0);
    const tokens = t1.output_text.split(/\s+/).length;
    assert.ok(tokens < 500, `the handler stopped early (${tokens} tokens of 1000)`);
  });

  it('every database connection cut mid-run (as a PostgreSQL restart does): nodes reconnect, the task completes', async () => {
    const a = nodes.find((n) => n.name === 'node-a')!;
    const b = nodes.find((n) => n.name === 'node-b')!;
    const id = await create(a, {
      type: 'generate',
      input: { prompt: 'survive', model: 'simulated?tps=100&tokens=200' },
    });
    await eventually(() => runningOn(id));
    await eventually(async () => (await api(b.url, 'GET', `/api/tasks/${id}`)).body.output_text.length > 0);
    const cut = await adminQuery<{ n: number }>(
      db.name,
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
      [db.name],
    );
    assert.ok(cut[0]!.n >= 4, `cut ${cut[0]!.n} connections (each node has a pool and a LISTEN session)`);
    const done = await eventually(async () => {
      const t = (await api(b.url, 'GET', `/api/tasks/${id}`)).body;
      return t.status === 'completed' ? t : null;
    }, 20_000);
    assert.equal(done.result.usage.output_tokens, 200);
    // Both nodes still take and run new work, and nothing is left running.
    for (const n of [a, b]) {
      const t = await create(n, { type: 'generate', input: { prompt: 'after', model: 'simulated?tps=0&tokens=3' } });
      assert.equal((await api(n.url, 'GET', `/api/tasks/${t}/wait?timeout_s=10`)).body.status, 'completed');
    }
    const stuck = await adminQuery(db.name, `SELECT id FROM tasks WHERE status IN ('running', 'cancelling')`);
    assert.deepEqual(stuck, []);
  });

  it('a stop request whose notification was missed still reaches the handler, at the next lease renewal', async () => {
    const a = nodes.find((n) => n.name === 'node-a')!;
    const id = await create(a, { type: 'generate', input: { prompt: 'quiet', model: SLOW } });
    await eventually(() => runningOn(id));
    // What requestCancel records, written behind the nodes' backs: no NOTIFY at all.
    await adminQuery(
      db.name,
      `UPDATE tasks SET status = 'cancelling', cancel_reason = 'user', cancel_requested_at = now() WHERE id = $1`,
      [id],
    );
    const t = await eventually(async () => {
      const x = (await api(a.url, 'GET', `/api/tasks/${id}`)).body;
      return x.status === 'cancelled' ? x : null;
    }, LEASE_MS * 3);
    assert.equal(t.cancel.reason, 'user');
  });

  it('a node frozen past its lease loses its task to the others; woken up, it stops that handler and writes nothing more', async () => {
    const a = nodes.find((n) => n.name === 'node-a')!;
    const b = nodes.find((n) => n.name === 'node-b')!;
    const id = await create(a, { type: 'generate', input: { prompt: 'frozen', model: SLOW } });
    const runner = await eventually(() => runningOn(id));
    const frozen = runner === a.name ? a : b;
    const witness = frozen === a ? b : a;
    await eventually(async () => (await api(witness.url, 'GET', `/api/tasks/${id}`)).body.output_text.length > 0);
    frozen.proc.kill('SIGSTOP');
    let lost;
    try {
      lost = await eventually(async () => {
        const x = (await api(witness.url, 'GET', `/api/tasks/${id}`)).body;
        return x.status === 'failed' ? x : null;
      }, LEASE_MS * 4);
    } finally {
      frozen.proc.kill('SIGCONT');
    }
    assert.equal(lost.error.code, 'node_lost');
    const seqAtLoss = (
      await adminQuery<{ n: number }>(db.name, 'SELECT max(seq)::int AS n FROM task_events WHERE task_id = $1', [id])
    )[0]!.n;
    // Awake, it renews, learns the task is gone, stops the handler and drops its events.
    await eventually(async () => /recovered by another node/.test(frozen.stderr()), LEASE_MS * 3);
    await new Promise((r) => setTimeout(r, 500));
    const after = await adminQuery<{ seq: number; type: string }>(
      db.name,
      'SELECT seq, type FROM task_events WHERE task_id = $1 ORDER BY seq DESC LIMIT 1',
      [id],
    );
    assert.deepEqual(after[0], { seq: seqAtLoss, type: 'task.failed' }, 'nothing written after the recovery');
    assert.equal((await api(frozen.url, 'GET', `/api/tasks/${id}`)).body.status, 'failed', 'the frozen node agrees');
    // And it goes on working.
    const next = await create(frozen, {
      type: 'generate',
      input: { prompt: 'again', model: 'simulated?tps=0&tokens=3' },
    });
    assert.equal((await api(frozen.url, 'GET', `/api/tasks/${next}/wait?timeout_s=10`)).body.status, 'completed');
  });

  it('SIGKILL: the task of a killed node ends failed node_lost within the lease, seen from another node', async () => {
    const a = nodes.find((n) => n.name === 'node-a')!;
    const b = nodes.find((n) => n.name === 'node-b')!;
    const id = await create(a, { type: 'generate', input: { prompt: 'doomed', model: SLOW } });
    const runner = await eventually(() => runningOn(id));
    const victim = runner === a.name ? a : b;
    const witness = victim === a ? b : a;
    // Follow it on the witness until at least some output exists.
    const ac = new AbortController();
    const stream = readSse(await sse(witness, id, {}, ac.signal));
    await eventually(async () => (await api(witness.url, 'GET', `/api/tasks/${id}`)).body.output_text.length > 0);

    const t0 = Date.now();
    victim.proc.kill('SIGKILL');
    await victim.exited;
    const frames = await stream;
    const lostAfter = Date.now() - t0;
    assertInOrder(frames, 1);
    const last = frames.at(-1)!;
    assert.equal(last.event, 'task.failed');
    const t = (await api(witness.url, 'GET', `/api/tasks/${id}`)).body;
    assert.equal(t.status, 'failed');
    assert.equal(t.error.code, 'node_lost');
    // Lease plus one reaper period, with room for a loaded machine.
    assert.ok(lostAfter < LEASE_MS * 4, `recovered after ${lostAfter} ms (lease ${LEASE_MS} ms)`);
    // The survivor still works.
    const ok = await create(witness, {
      type: 'generate',
      input: { prompt: 'after', model: 'simulated?tps=0&tokens=3' },
    });
    assert.equal((await api(witness.url, 'GET', `/api/tasks/${ok}/wait?timeout_s=10`)).body.status, 'completed');
  });
});
