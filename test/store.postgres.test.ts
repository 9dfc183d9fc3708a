// PostgresStore: the shared conformance suite, then what only several nodes over one
// PostgreSQL can show: concurrent claims from separate connections, per-owner limits
// held across them, NOTIFY between them, and the LISTEN session surviving its death.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { LeashError } from '../src/core/errors.ts';
import { EventLog } from '../src/runtime/event-log.ts';
import { MIGRATIONS, migrate } from '../src/store/postgres/migrations.ts';
import { PgNotifier } from '../src/store/postgres/notifier.ts';
import { PostgresStore } from '../src/store/postgres/postgres-store.ts';
import { openStore, parseStoreUrl } from '../src/store/open.ts';
import { adminQuery, createTestDatabase, postgresSkip, type TestDatabase } from './helpers/postgres.ts';
import { newTask, runStoreConformance } from './store.conformance.ts';

const skip = await postgresSkip();
let db: TestDatabase;
const errors: Array<{ err: unknown; what: string }> = [];
const onError = (err: unknown, what: string): void => void errors.push({ err, what });

before(async () => {
  if (!skip) db = await createTestDatabase();
});
after(async () => {
  await db?.drop();
});

async function openFresh(): Promise<PostgresStore> {
  const s = await PostgresStore.open(db.url, { onError, listenPingMs: 500 });
  await s.migrate();
  return s;
}

/** Empties every table: each conformance test starts from nothing. */
async function truncate(): Promise<void> {
  await adminQuery(db.name, 'TRUNCATE tasks, task_events, threads, messages RESTART IDENTITY CASCADE');
}

const NOW = '2025-01-01T00:00:01.000Z';

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('PostgresStore', { skip }, () => {
  runStoreConformance('postgres', async () => {
    await truncate();
    return openFresh();
  });

  describe('PostgreSQL specifics', () => {
    it('a connection that dies inside a transaction fails that call (store_unavailable), not the process', async () => {
      // pg-pool hands out clients without an error listener; a checked-out client whose
      // backend ends emits 'error', which unheard would end the process (a PostgreSQL
      // restart during any transaction did, now and then).
      await truncate();
      const s = await openFresh();
      const locker = new pg.Client({ connectionString: db.url });
      await locker.connect();
      try {
        const lockerPid = (await locker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE');
        // recoverLost runs a transaction; its first statement now waits for the lock.
        // (Its outcome is taken at once: it fails while the test is still awaiting the kill.)
        const outcome = s.recoverLost({ expiredBefore: NOW, resumableTypes: [], now: NOW }).then(
          () => null,
          (e: unknown) => e,
        );
        let victim: number | undefined;
        for (let i = 0; victim === undefined; i++) {
          if (i > 500) assert.fail('the transaction never waited for the lock');
          const rows = await adminQuery<{ pid: number }>(
            db.name,
            `SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND backend_type = 'client backend'
               AND wait_event_type = 'Lock' AND pid <> $1`,
            [lockerPid],
          );
          victim = rows[0]?.pid;
          if (victim === undefined) await new Promise((r) => setTimeout(r, 10));
        }
        await adminQuery(db.name, 'SELECT pg_terminate_backend($1)', [victim]);
        const err = await outcome;
        assert.ok(LeashError.is(err, 'store_unavailable'), `expected store_unavailable, got ${String(err)}`);
        await new Promise((r) => setTimeout(r, 200)); // the client's 'error' event follows the rejection
        await locker.query('ROLLBACK');
        // Still here, and the store works on a fresh connection.
        assert.deepEqual(await s.recoverLost({ expiredBefore: NOW, resumableTypes: [], now: NOW }), []);
      } finally {
        await locker.end().catch(() => {});
        await s.close();
      }
    });

    it('SKIP LOCKED: stores claiming concurrently never claim one task twice', async () => {
      await truncate();
      const stores = await Promise.all([openFresh(), openFresh(), openFresh()]);
      try {
        const N = 120;
        for (let i = 0; i < N; i++) await stores[0]!.createTask(newTask(`task_${i}`), { maxQueuedPerOwner: 1000 });
        const claimedBy = new Map<string, string>();
        // Every store keeps claiming small batches at once until the queue is empty.
        await Promise.all(
          stores.map(async (s, k) => {
            for (;;) {
              const got = await s.claimTasks({
                nodeId: `n${k}`,
                max: 4,
                maxRunningPerOwner: 1000,
                leaseMs: 60_000,
                now: NOW,
              });
              for (const c of got) {
                assert.ok(!claimedBy.has(c.task.id), `${c.task.id} claimed by n${k} and ${claimedBy.get(c.task.id)}`);
                claimedBy.set(c.task.id, `n${k}`);
              }
              if (got.length === 0) return;
            }
          }),
        );
        assert.equal(claimedBy.size, N);
        const counts = await stores[0]!.countByStatus();
        assert.equal(counts.running, N);
        assert.equal(counts.queued, 0);
        // Each claim appended exactly one task.started.
        const starts = await adminQuery<{ n: number }>(
          db.name,
          `SELECT count(*)::int AS n FROM task_events WHERE type = 'task.started'`,
        );
        assert.equal(starts[0]!.n, N);
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });

    it('the per-owner running limit holds across stores claiming at once', async () => {
      await truncate();
      const stores = await Promise.all([openFresh(), openFresh(), openFresh(), openFresh()]);
      try {
        for (let i = 0; i < 40; i++) await stores[0]!.createTask(newTask(`a_${i}`), { maxQueuedPerOwner: 1000 });
        for (let i = 0; i < 5; i++)
          await stores[0]!.createTask(newTask(`b_${i}`, { owner: 'bob' }), { maxQueuedPerOwner: 1000 });
        for (let round = 0; round < 5; round++) {
          await Promise.all(
            stores.map((s, k) =>
              s.claimTasks({ nodeId: `n${k}`, max: 10, maxRunningPerOwner: 3, leaseMs: 60_000, now: NOW }),
            ),
          );
        }
        const running = await adminQuery<{ owner: string; n: number }>(
          db.name,
          `SELECT owner, count(*)::int AS n FROM tasks WHERE status = 'running' GROUP BY owner ORDER BY owner`,
        );
        assert.deepEqual(
          running.map((r) => [r.owner, r.n]),
          [
            ['alice', 3],
            ['bob', 3],
          ],
        );
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });

    it('eager creates racing claims on four stores keep the per-owner running limit', async () => {
      await truncate();
      const stores = await Promise.all([openFresh(), openFresh(), openFresh(), openFresh()]);
      const LIMIT = 3;
      try {
        const startOn = (k: number) => ({
          maxQueuedPerOwner: 1000,
          startOn: { nodeId: `n${k}`, maxRunningPerOwner: LIMIT, leaseMs: 60_000, now: NOW },
        });
        let eager = 0;
        await Promise.all(
          stores.map(async (s, k) => {
            for (let i = 0; i < 15; i++) {
              const [res] = await Promise.all([
                s.createTask(newTask(`e_${k}_${i}`), startOn(k)),
                s.claimTasks({ nodeId: `n${k}`, max: 2, maxRunningPerOwner: LIMIT, leaseMs: 60_000, now: NOW }),
              ]);
              if (res.kind === 'created' && res.started) eager++;
            }
          }),
        );
        const running = await adminQuery<{ n: number }>(
          db.name,
          `SELECT count(*)::int AS n FROM tasks WHERE owner = 'alice' AND status = 'running'`,
        );
        assert.equal(running[0]!.n, LIMIT, 'exactly the limit running, never more');
        assert.ok(eager >= 1, 'some creates started eagerly');
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });

    it('eager start does not wait for an owner lock held elsewhere: the task is queued', async () => {
      await truncate();
      const s = await openFresh();
      const holder = new pg.Client({ connectionString: db.url });
      await holder.connect();
      try {
        // What a claim for alice holds until its commit (the key leash_claim and leash_create use).
        await holder.query('BEGIN');
        await holder.query(`SELECT pg_advisory_xact_lock(${0x6c6f_776e}, hashtext('alice'))`);
        const startOn = { nodeId: 'n1', maxRunningPerOwner: 10, leaseMs: 60_000, now: NOW };
        const t0 = performance.now();
        const res = await s.createTask(newTask('task_locked'), { maxQueuedPerOwner: 10, startOn });
        assert.ok(performance.now() - t0 < 2000, 'did not wait for the lock');
        assert.equal(res.kind === 'created' && res.task.status, 'queued');
        await holder.query('COMMIT');
        const free = await s.createTask(newTask('task_free', { priority: 1 }), { maxQueuedPerOwner: 10, startOn });
        assert.equal(free.kind === 'created' && free.task.status, 'running');
      } finally {
        await holder.end();
        await s.close();
      }
    });

    it("far below its limit, an owner's eager creates share its lock; near the limit they need it alone", async () => {
      await truncate();
      const s = await openFresh();
      const holder = new pg.Client({ connectionString: db.url });
      await holder.connect();
      try {
        const conns = Number(
          (
            await holder.query<{ v: string }>(
              `SELECT current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int
                 + current_setting('max_worker_processes')::int AS v`,
            )
          ).rows[0]!.v,
        );
        // Another eager create of alice in flight: it holds her lock shared until its commit.
        await holder.query('BEGIN');
        await holder.query(`SELECT pg_advisory_xact_lock_shared(${0x6c6f_776e}, hashtext('alice'))`);
        const create = async (id: string, limit: number): Promise<string | false> => {
          const startOn = { nodeId: 'n1', maxRunningPerOwner: limit, leaseMs: 60_000, now: NOW };
          const res = await s.createTask(newTask(id), { maxQueuedPerOwner: 10, startOn });
          assert.equal(res.kind, 'created');
          const status = res.kind === 'created' && res.task.status;
          // Leave the queue empty for the next create (a queued task ahead refuses eager start).
          if (status === 'queued')
            await adminQuery(db.name, `UPDATE tasks SET status = 'cancelled' WHERE id = $1`, [id]);
          return status;
        };
        // No more creates are in flight than there can be transactions (conns), so with the running count
        // plus that many still within the limit, sharing the lock cannot overshoot it.
        const limit = conns + 2;
        assert.equal(await create('t1', limit), 'running', 'count 0: shared');
        assert.equal(await create('t2', limit), 'running', 'count 1: shared');
        assert.equal(await create('t3', limit), 'running', 'count 2 = limit - conns: shared');
        assert.equal(await create('t4', limit), 'queued', 'count 3: needs the lock alone, which is taken');
        assert.equal(await create('t5', Math.min(10, conns)), 'queued', 'a small limit always needs the lock alone');
        await holder.query('COMMIT');
        assert.equal(await create('t6', limit), 'running', 'lock free: the exact count decides (3 < limit)');
        // A claim takes the lock exclusively, so it waits for the creates sharing it.
        await holder.query('BEGIN');
        await holder.query(`SELECT pg_advisory_xact_lock_shared(${0x6c6f_776e}, hashtext('alice'))`);
        await s.createTask(newTask('t7', { priority: -1 }), { maxQueuedPerOwner: 10 });
        let claimed: number | null = null;
        const claim = s
          .claimTasks({ nodeId: 'n1', max: 5, maxRunningPerOwner: limit, leaseMs: 60_000, now: NOW })
          .then((c) => (claimed = c.length));
        // Until PostgreSQL shows it waiting for the owner lock.
        for (let i = 0; ; i++) {
          const waiting = await adminQuery<{ n: number }>(
            db.name,
            `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`,
          );
          if (waiting[0]!.n > 0) break;
          assert.ok(i < 100, 'the claim never waited for the lock');
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal(claimed, null, 'the claim waits for the shared holder');
        await holder.query('COMMIT');
        await claim;
        assert.equal(claimed, 1);
      } finally {
        await holder.end();
        await s.close();
      }
    });

    it('NOTIFY reaches another store, in order; a store does not hear its own twice', async () => {
      const a = await openFresh();
      const b = await openFresh();
      try {
        const atB: string[] = [];
        const atA: string[] = [];
        b.notifier.subscribe('cancel', (p) => atB.push(p));
        a.notifier.subscribe('cancel', (p) => atA.push(p));
        const sent = Array.from({ length: 50 }, (_, i) => `task_${i}:user`);
        for (const p of sent) void a.notifier.publish('cancel', p);
        await a.notifier.publish('events', 'task_x:3');
        await waitFor(() => atB.length === sent.length, 'delivery at B');
        assert.deepEqual(atB, sent);
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(atA, sent, 'A heard its own publishes once (locally), not again from PostgreSQL');
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('writes send no NOTIFY; the event log announces each batch after its commit, once per task', async () => {
      // A transaction that notifies holds PostgreSQL's notify-queue lock through its
      // commit: creates and event writes that notified committed one at a time.
      await truncate();
      const a = await openFresh();
      const b = await openFresh();
      try {
        const atB: string[] = [];
        const atA: string[] = [];
        for (const ch of ['wakeup', 'events'] as const) {
          b.notifier.subscribe(ch, (p) => atB.push(`${ch} ${p}`));
          a.notifier.subscribe(ch, (p) => atA.push(`${ch} ${p}`));
        }
        await a.createTask(newTask('task_n1'), { maxQueuedPerOwner: 10 });
        await a.claimTasks({ nodeId: 'n1', max: 1, maxRunningPerOwner: 10, leaseMs: 60_000, now: NOW });
        const delta = () => ({ type: 'output.delta' as const, data: { text: 'x' } });
        await a.writeEvents([3, 4].map((seq) => ({ event: { ...delta(), task_id: 'task_n1', seq, created_at: NOW } })));
        await new Promise((r) => setTimeout(r, 150));
        assert.deepEqual(atB, [], 'the store itself announced nothing');

        const log = new EventLog(a, pino({ level: 'silent' }));
        for (const seq of [5, 6, 7]) log.append('task_n1', seq, delta(), { append_output: 'x' });
        await log.flush();
        await waitFor(() => atB.length >= 1, 'announcement at B');
        await new Promise((r) => setTimeout(r, 150));
        assert.deepEqual(atB, ['events task_n1:7'], 'one announcement for the batch: its last seq');
        assert.deepEqual(atA, ['events task_n1:7'], 'A heard it once, locally');
        const row = await adminQuery<{ output_text: string; last_seq: number }>(
          db.name,
          `SELECT output_text, last_seq FROM tasks WHERE id = 'task_n1'`,
        );
        assert.deepEqual(row[0], { output_text: 'xxx', last_seq: 7 }, 'announced after the batch was stored');
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('a burst of publishes goes out in few NOTIFY statements, one at a time, repeats dropped, order kept', async () => {
      const pool = new pg.Pool({ connectionString: db.url, max: 4 });
      const statements: number[] = [];
      let inFlight = 0;
      const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
      (pool as unknown as { query: unknown }).query = async (...args: unknown[]) => {
        statements.push(++inFlight);
        try {
          return await query(...args);
        } finally {
          inFlight--;
        }
      };
      const a = new PgNotifier({ connection: { connectionString: db.url }, pool, onError });
      const b = await openFresh();
      try {
        await a.start();
        const atB: string[] = [];
        b.notifier.subscribe('cancel', (p) => atB.push(p));
        b.notifier.subscribe('wakeup', (p) => atB.push(`wakeup ${p}`));
        const sent: Array<Promise<void>> = [];
        for (let i = 0; i < 200; i++) {
          sent.push(a.publish('cancel', `task_${i}:user`), a.publish('wakeup', ''));
          if (i % 50 === 0) await new Promise((r) => setImmediate(r)); // spread over several ticks
        }
        await Promise.all(sent);
        await waitFor(() => atB.length >= 201, 'delivery at B');
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(
          atB.filter((p) => !p.startsWith('wakeup')),
          Array.from({ length: 200 }, (_, i) => `task_${i}:user`),
        );
        const wakeups = atB.length - 200;
        assert.ok(
          statements.length >= 1 && statements.length <= 5,
          `${statements.length} statements for 400 publishes`,
        );
        assert.ok(wakeups <= statements.length, `${wakeups} wakeups: at most one per statement`);
        assert.deepEqual(new Set(statements), new Set([1]), 'never two NOTIFY statements at once');
      } finally {
        await a.close();
        await pool.end();
        await b.close();
      }
    });

    it('a NOTIFY that never answers does not hold up the messages after it', async () => {
      let calls = 0;
      const hangsOnce = {
        query: () => (++calls === 1 ? new Promise(() => {}) : Promise.resolve({ rows: [] })),
      } as unknown as pg.Pool;
      const seen: string[] = [];
      const n = new PgNotifier({
        connection: { connectionString: db.url },
        pool: hangsOnce,
        pingMs: 100,
        onError: (_err, what) => void seen.push(what),
      });
      const t0 = performance.now();
      await n.publish('wakeup', '');
      assert.ok(performance.now() - t0 < 2000, 'the first publish gave up after its timeout');
      await n.publish('cancel', 'task_1:user');
      assert.equal(calls, 2, 'the next message was sent');
      assert.deepEqual(seen, ['NOTIFY of 1 message(s) failed']);
      await n.close();
    });

    it('the LISTEN session is reopened after pg_terminate_backend, and wakes subscribers', async () => {
      const a = await openFresh();
      const b = await openFresh();
      try {
        const pid = b.notifier.listenerPid;
        assert.ok(pid !== null);
        const wakeups: string[] = [];
        b.notifier.subscribe('wakeup', (p) => wakeups.push(p));
        const killed = await adminQuery<{ ok: boolean }>(db.name, 'SELECT pg_terminate_backend($1) AS ok', [pid]);
        assert.equal(killed[0]!.ok, true);
        await waitFor(() => b.notifier.reconnects >= 1 && b.notifier.listening, 'reconnect', 10_000);
        assert.notEqual(b.notifier.listenerPid, pid);
        await waitFor(() => wakeups.includes(''), 'a wakeup after reconnecting');
        // And it listens again.
        const got: string[] = [];
        b.notifier.subscribe('events', (p) => got.push(p));
        await a.notifier.publish('events', 'task_after:9');
        await waitFor(() => got.includes('task_after:9'), 'delivery after reconnect');
        assert.ok(
          errors.some((e) => /LISTEN connection lost/.test(e.what)),
          'the loss was reported',
        );
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('pooled connections killed under it (a server restart, as seen by a node) are replaced', async () => {
      await truncate();
      const s = await openFresh();
      try {
        await s.createTask(newTask('task_r1'), { maxQueuedPerOwner: 10 });
        await adminQuery(
          db.name,
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [db.name],
        );
        // The first use of a dead pooled connection may fail; the next ones work.
        let ok = false;
        for (let i = 0; i < 20 && !ok; i++) {
          try {
            await s.ping();
            ok = true;
          } catch {
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        assert.ok(ok, 'the pool reconnected');
        assert.equal((await s.getTask('task_r1'))?.id, 'task_r1');
        await waitFor(() => s.notifier.listening, 'LISTEN back', 10_000);
      } finally {
        await s.close();
      }
    });

    it('writeEvents names the task whose seq was taken, so its node can drop it', async () => {
      await truncate();
      const s = await openFresh();
      try {
        await s.createTask(newTask('task_lost'), { maxQueuedPerOwner: 10 });
        await s.claimTasks({ nodeId: 'n1', max: 2, maxRunningPerOwner: 10, leaseMs: 1, now: NOW });
        // Another node recovers task_lost after its lease ran out: it writes above seq 2 + SEQ_AHEAD,
        // so n1's seq 3 takes no key and only the fence (seq not above last_seq) refuses it.
        const lost = await s.recoverLost({ expiredBefore: '2025-01-01T00:01:00.000Z', resumableTypes: [], now: NOW });
        assert.deepEqual(
          lost.map((t) => t.status),
          ['failed'],
        );
        await s.createTask(newTask('task_ok'), { maxQueuedPerOwner: 10 });
        await s.claimTasks({ nodeId: 'n1', max: 2, maxRunningPerOwner: 10, leaseMs: 60_000, now: NOW });
        const ev = (id: string, seq: number) => ({
          event: { task_id: id, seq, type: 'output.delta' as const, data: { text: 'x' }, created_at: NOW },
          patch: { append_output: 'x' },
        });
        await assert.rejects(
          s.writeEvents([ev('task_ok', 3), ev('task_lost', 3)]),
          (e: unknown) =>
            LeashError.is(e, 'event_conflict') && (e.details as { task_id: string }).task_id === 'task_lost',
        );
        assert.equal((await s.listEvents('task_ok', 3)).length, 0, 'all or nothing');
        await assert.rejects(
          s.writeEvents([ev('task_gone', 1)]),
          (e: unknown) => LeashError.is(e, 'not_found') && (e.details as { task_id: string }).task_id === 'task_gone',
        );
      } finally {
        await s.close();
      }
    });

    it('event writes find their task by index after the table grew, not by a plan made when it was small', async () => {
      await truncate();
      // One connection, as a long-lived pooled one: a plan it cached when `tasks` held one
      // row would still be used after 5,000 more (nothing analyzes the table meanwhile).
      const s = await PostgresStore.open(db.url, { onError, listenPingMs: 500, poolMax: 1 });
      const seqScans = async (): Promise<number> =>
        Number(
          (
            await adminQuery<{ n: string }>(
              db.name,
              `SELECT seq_scan AS n FROM pg_stat_user_tables WHERE relname = 'tasks'`,
            )
          )[0]!.n,
        );
      try {
        await s.migrate();
        await s.createTask(newTask('task_w'), { maxQueuedPerOwner: 10 });
        await s.claimTasks({ nodeId: 'n1', max: 1, maxRunningPerOwner: 10, leaseMs: 60_000, now: NOW });
        const ev = (seq: number) => ({
          event: { task_id: 'task_w', seq, type: 'output.delta' as const, data: { text: 'x' }, created_at: NOW },
          patch: { append_output: 'x' },
        });
        let seq = 2;
        for (let i = 0; i < 3; i++) await s.writeEvents([ev(++seq)]);
        await adminQuery(
          db.name,
          `INSERT INTO tasks (id, type, owner, status, created_at, input_hash, input, ended_at)
           SELECT 'old_' || g, 'echo', 'alice', 'completed', now(), 'h', '{}', now() FROM generate_series(1, 5000) g`,
        );
        // A backend reports its counts at most once a second: let the ones so far out.
        await new Promise((r) => setTimeout(r, 1100));
        await s.ping();
        await new Promise((r) => setTimeout(r, 100));
        const before = await seqScans();
        for (let i = 0; i < 20; i++) await s.writeEvents([ev(++seq)]);
        await new Promise((r) => setTimeout(r, 1100));
        await s.ping();
        await new Promise((r) => setTimeout(r, 100));
        const scans = (await seqScans()) - before;
        assert.ok(scans < 5, `20 event writes scanned the whole table ${scans} times`);
        const row = await adminQuery<{ n: number }>(db.name, `SELECT last_seq AS n FROM tasks WHERE id = 'task_w'`);
        assert.equal(row[0]!.n, seq);
      } finally {
        await s.close().catch(() => {});
      }
    });

    it('text columns refuse nothing: NUL becomes U+FFFD in text, stays exact in event data', async () => {
      await truncate();
      const s = await openFresh();
      try {
        await s.createTask(newTask('task_nul', { input: { text: 'a\u0000b' } }), { maxQueuedPerOwner: 10 });
        await s.claimTasks({ nodeId: 'n1', max: 1, maxRunningPerOwner: 10, leaseMs: 60_000, now: NOW });
        await s.writeEvents([
          {
            event: { task_id: 'task_nul', seq: 3, type: 'output.delta', data: { text: 'x\u0000y' }, created_at: NOW },
            patch: { append_output: 'x\u0000y' },
          },
        ]);
        const t = (await s.getTask('task_nul'))!;
        assert.deepEqual(t.input, { text: 'a\u0000b' });
        assert.equal(t.output_text, 'x\uFFFDy');
        assert.deepEqual((await s.listEvents('task_nul', 2))[0]!.data, { text: 'x\u0000y' });
      } finally {
        await s.close();
      }
    });

    it('migrations: recorded once, concurrent starts apply them once, a newer schema is refused', async () => {
      const [a, b] = await Promise.all([openFresh(), openFresh()]);
      await Promise.all([a.migrate(), b.migrate(), a.migrate()]);
      await a.close();
      await b.close();
      const rows = await adminQuery<{ id: number; name: string }>(
        db.name,
        'SELECT id, name FROM leash_migrations ORDER BY id',
      );
      assert.deepEqual(
        rows.map((r) => [r.id, r.name]),
        MIGRATIONS.map((m) => [m.id, m.name]),
      );
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        assert.deepEqual(await migrate(c), []);
        await assert.rejects(
          migrate(c, [...MIGRATIONS, { id: 2, name: 'broken', sql: 'CREATE TABLE x (y int); NOT SQL' }]),
          (e: unknown) => LeashError.is(e, 'migration_error'),
        );
        const tables = await c.query(`SELECT 1 FROM pg_tables WHERE tablename = 'x'`);
        assert.equal(tables.rowCount, 0, 'the failed migration rolled back');
        await c.query(`INSERT INTO leash_migrations (id, name) VALUES (999, 'future')`);
        await assert.rejects(migrate(c), /newer than this version/);
        await c.query('DELETE FROM leash_migrations WHERE id = 999');
      } finally {
        await c.end();
      }
    });

    it('open: an unreachable server is store_unavailable, with the password hidden', async () => {
      await assert.rejects(
        PostgresStore.open('postgres://u:secret@127.0.0.1:1/nope', { onError }),
        (e: unknown) =>
          LeashError.is(e, 'store_unavailable') && !e.message.includes('secret') && e.message.includes('***'),
      );
    });
  });
});

describe('openStore', () => {
  it('chooses the store by the URL', () => {
    assert.deepEqual(parseStoreUrl('./leash.db'), { kind: 'sqlite', target: './leash.db' });
    assert.deepEqual(parseStoreUrl('sqlite:./a.db'), { kind: 'sqlite', target: './a.db' });
    assert.deepEqual(parseStoreUrl('sqlite:///tmp/a.db'), { kind: 'sqlite', target: '/tmp/a.db' });
    assert.deepEqual(parseStoreUrl('sqlite::memory:'), { kind: 'sqlite', target: ':memory:' });
    assert.deepEqual(parseStoreUrl('postgres://u@h/db'), { kind: 'postgres', target: 'postgres://u@h/db' });
    assert.deepEqual(parseStoreUrl('postgresql://u@h:5433/db'), {
      kind: 'postgres',
      target: 'postgresql://u@h:5433/db',
    });
    assert.throws(
      () => parseStoreUrl('mysql://u@h/db'),
      (e: unknown) => LeashError.is(e, 'invalid_request'),
    );
    assert.throws(
      () => parseStoreUrl('  '),
      (e: unknown) => LeashError.is(e, 'invalid_request'),
    );
    assert.throws(
      () => parseStoreUrl('sqlite:'),
      (e: unknown) => LeashError.is(e, 'invalid_request'),
    );
  });

  it('opens SQLite for a path and PostgreSQL for a URL', { skip }, async () => {
    const s = await openStore('sqlite::memory:');
    assert.equal(s.kind, 'sqlite');
    await s.close();
    const p = await openStore(db.url, { onError });
    try {
      assert.equal(p.kind, 'postgres');
      await p.ping();
    } finally {
      await p.close();
    }
  });
});
