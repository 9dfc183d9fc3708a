import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { LeashError } from '../src/core/errors.ts';
import { MIGRATIONS, migrate } from '../src/store/sqlite/migrations.ts';
import { LocalNotifier } from '../src/store/sqlite/notifier.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { SqliteWorkerStore } from '../src/store/sqlite/worker-store.ts';
import { newTask, runStoreConformance } from './store.conformance.ts';

let root = '';
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'leash-sqlite-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
/** A fresh database file per call. */
const freshPath = (): string => join(root, `store-${process.pid}-${++n}.db`);

async function openMigrated(path = freshPath()): Promise<SqliteStore> {
  const s = SqliteStore.open(path);
  await s.migrate();
  return s;
}

runStoreConformance('sqlite', () => openMigrated());
runStoreConformance('sqlite on its own thread', async () => {
  const s = await SqliteWorkerStore.open(freshPath());
  await s.migrate();
  return s;
});

describe('SqliteStore specifics', () => {
  it('uses WAL journal mode and the configured pragmas on a file', async () => {
    const path = freshPath();
    const s = await openMigrated(path);
    try {
      // journal_mode=WAL is persistent in the file, so a second connection sees it.
      const probe = new DatabaseSync(path);
      try {
        assert.equal((probe.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal');
      } finally {
        probe.close();
      }
      assert.equal(s.kind, 'sqlite');
    } finally {
      await s.close();
    }
  });

  it('migrate twice is a no-op and records each migration once', async () => {
    const path = freshPath();
    const s = await openMigrated(path);
    await s.createTask(newTask('task_a'), { maxQueuedPerOwner: 10 });
    await s.migrate();
    await s.close();

    const db = new DatabaseSync(path);
    try {
      const rows = db.prepare('SELECT id, name FROM migrations ORDER BY id').all() as Array<{
        id: number;
        name: string;
      }>;
      assert.deepEqual(
        rows.map((r) => [r.id, r.name]),
        MIGRATIONS.map((m) => [m.id, m.name]),
      );
      assert.deepEqual(migrate(db), [], 'nothing left to apply');
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM tasks').get() as { n: number }).n, 1);
    } finally {
      db.close();
    }
  });

  it('remote types stored before owners were recorded become owner "" (known, nobody’s) at migration 5', async () => {
    const path = freshPath();
    const db = new DatabaseSync(path);
    try {
      migrate(
        db,
        MIGRATIONS.filter((m) => m.id <= 4),
      );
      db.prepare('INSERT INTO remote_types (type, input_schema, declared_at) VALUES (?, ?, ?)').run(
        'old.t',
        '{"type":"object"}',
        '2026-01-01T00:00:00.000Z',
      );
    } finally {
      db.close();
    }
    const s = await openMigrated(path);
    try {
      assert.deepEqual(await s.listRemoteTypes(), [{ owner: '', type: 'old.t', schema: '{"type":"object"}' }]);
      await s.saveRemoteType('ann', 'old.t', null, '2026-01-02T00:00:00.000Z');
      assert.deepEqual(await s.listRemoteTypes(), [
        { owner: '', type: 'old.t', schema: '{"type":"object"}' },
        { owner: 'ann', type: 'old.t', schema: null },
      ]);
    } finally {
      await s.close();
    }
  });

  it('a failing migration rolls back entirely and is not recorded', () => {
    const db = new DatabaseSync(':memory:');
    try {
      const bad = [
        { id: 1, name: 'ok', sql: 'CREATE TABLE one (x INTEGER)' },
        { id: 2, name: 'broken', sql: 'CREATE TABLE two (x INTEGER); THIS IS NOT SQL' },
      ];
      assert.throws(
        () => migrate(db, bad),
        (e: unknown) => LeashError.is(e, 'migration_error'),
      );
      const tables = (
        db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as Array<{ name: string }>
      ).map((r) => r.name);
      assert.deepEqual(tables, ['migrations', 'one']);
      assert.deepEqual(
        (db.prepare('SELECT id FROM migrations').all() as Array<{ id: number }>).map((r) => r.id),
        [1],
      );
      // Fixed, it applies just the missing one.
      assert.deepEqual(migrate(db, [bad[0]!, { id: 2, name: 'fixed', sql: 'CREATE TABLE two (x INTEGER)' }]), [2]);
      assert.throws(
        () =>
          migrate(db, [
            { id: 3, name: 'a', sql: '' },
            { id: 3, name: 'b', sql: '' },
          ]),
        /must increase/,
      );
    } finally {
      db.close();
    }
  });

  it('refuses a database written by a newer schema', async () => {
    const path = freshPath();
    const s = await openMigrated(path);
    await s.close();
    const db = new DatabaseSync(path);
    db.prepare(
      `INSERT INTO migrations (id, name, applied_at) VALUES (999, 'future', '2099-01-01T00:00:00.000Z')`,
    ).run();
    db.close();
    const again = SqliteStore.open(path);
    try {
      await assert.rejects(again.migrate(), (e: unknown) => LeashError.is(e, 'migration_error'));
    } finally {
      await again.close();
    }
  });

  it('reopening the file keeps tasks, events and threads', async () => {
    const path = freshPath();
    const s = await openMigrated(path);
    const created = await s.createTask(newTask('task_keep', { input: { deep: [1, { x: 'y' }] } }), {
      maxQueuedPerOwner: 10,
    });
    await s.createThread({
      id: 'thr_keep',
      owner: 'alice',
      created_at: '2025-01-01T00:00:00.000Z',
      metadata: { a: 1 },
    });
    await s.close();

    const s2 = await openMigrated(path);
    try {
      assert.equal(created.kind, 'created');
      assert.deepEqual(await s2.getTask('task_keep'), (created as { task: unknown }).task);
      assert.equal((await s2.listEvents('task_keep', 0)).length, 1);
      assert.deepEqual((await s2.getThread('thr_keep'))?.metadata, { a: 1 });
    } finally {
      await s2.close();
    }
  });

  it('works in memory', async () => {
    const s = SqliteStore.open(':memory:');
    await s.migrate();
    assert.equal((await s.createTask(newTask('task_m'), { maxQueuedPerOwner: 1 })).kind, 'created');
    assert.equal((await s.getTask('task_m'))?.id, 'task_m');
    await s.close();
  });

  it('two connections to one file never claim the same task', async () => {
    const path = freshPath();
    const a = await openMigrated(path);
    const b = await openMigrated(path);
    try {
      for (let i = 0; i < 20; i++) await a.createTask(newTask(`task_${i}`), { maxQueuedPerOwner: 100 });
      const opts = { max: 3, maxRunningPerOwner: 100, leaseMs: 1000, now: '2025-01-01T00:00:01.000Z' };
      const seen = new Set<string>();
      for (let round = 0; round < 10; round++) {
        for (const [store, nodeId] of [
          [a, 'na'],
          [b, 'nb'],
        ] as const) {
          for (const c of await store.claimTasks({ ...opts, nodeId })) {
            assert.ok(!seen.has(c.task.id), `${c.task.id} claimed twice`);
            seen.add(c.task.id);
          }
        }
      }
      assert.equal(seen.size, 20);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('reports an unopenable path as a LeashError', () => {
    assert.throws(
      () => SqliteStore.open(join(root, 'no', 'such', 'dir', 'x.db')),
      (e: unknown) => LeashError.is(e, 'store_unavailable'),
    );
  });

  it('a closed store rejects with store_closed', async () => {
    const s = await openMigrated();
    await s.close();
    await assert.rejects(s.listTasks({ owner: 'alice' }), (e: unknown) => LeashError.is(e, 'store_closed'));
    await assert.rejects(s.migrate(), (e: unknown) => LeashError.is(e, 'store_closed'));
  });

  it('writeEvents reports a seq conflict as event_conflict and an unknown task as not_found', async () => {
    const s = await openMigrated();
    try {
      await s.createTask(newTask('task_c'), { maxQueuedPerOwner: 10 });
      const ev = (task_id: string, seq: number) => ({
        event: {
          task_id,
          seq,
          type: 'output.delta' as const,
          data: { text: 'x' },
          created_at: '2025-01-01T00:00:02.000Z',
        },
      });
      await assert.rejects(s.writeEvents([ev('task_c', 1)]), (e: unknown) => LeashError.is(e, 'event_conflict'));
      await assert.rejects(s.writeEvents([ev('task_nope', 1)]), (e: unknown) => LeashError.is(e, 'not_found'));
    } finally {
      await s.close();
    }
  });

  it('every statement a full workload prepares runs on an index, the hot ones on their partial index', async () => {
    const s = await openMigrated();
    try {
      const now = '2025-01-01T00:00:10.000Z';
      await s.createThread({ id: 'thr_p', owner: 'alice', created_at: now, metadata: {} });
      await s.createTask(newTask('task_p1', { idempotency_key: 'k' }), { maxQueuedPerOwner: 10 });
      await s.createTask(newTask('task_p2', { thread_id: 'thr_p' }), { maxQueuedPerOwner: 10 });
      await s.createTask(newTask('task_p3'), { maxQueuedPerOwner: 10 });
      await s.claimTasks({ nodeId: 'n', max: 1, maxRunningPerOwner: 10, leaseMs: 1000, now });
      await s.claimTasks({ nodeId: 'n', max: 5, maxRunningPerOwner: 2, leaseMs: 1000, now });
      await s.writeEvents([
        {
          event: { task_id: 'task_p1', seq: 3, type: 'task.completed', data: { result: 1 }, created_at: now },
          patch: { status: 'completed', result: 1, ended_at: now },
        },
      ]);
      await s.getTask('task_p1', 'alice');
      await s.listTasks({ owner: 'alice' });
      await s.listTasks({ owner: 'alice', status: ['running', 'queued'], type: 'echo' });
      await s.listTasks({ owner: 'alice', status: ['completed'] });
      await s.listTasks({ owner: 'alice', thread_id: 'thr_p' });
      await s.findActiveTaskIds({ owner: 'alice', created_before: now });
      await s.countByStatus();
      await s.findCachedResult('alice', 'echo', 'h', now);
      await s.renewLeases('n', 1000, now);
      await s.listEvents('task_p1', 0, 10);
      await s.saveCheckpoint('task_p3', { a: 1 });
      await s.requestCancel('task_p3', 'user', now);
      await s.cancelQueued('task_p2', 'user', now);
      await s.recoverLost({ nodeId: 'n', expiredBefore: now, resumableTypes: [], now });
      await s.deleteTask('task_p1', 'alice');
      await s.purgeEnded(now);
      await s.getThread('thr_p');
      await s.listThreads('alice', 10);
      const m = await s.appendMessage({
        id: 'msg_p',
        thread_id: 'thr_p',
        role: 'user',
        content: 'x',
        status: 'complete',
        task_id: 'task_p2',
        created_at: now,
      });
      await s.updateMessage(m.id, { append: 'y' });
      await s.listMessages('thr_p');
      await s.deleteMessagesOfTask('thr_p', 'task_p2');
      await s.deleteThread('thr_p', 'alice');

      const plans = s.explainStatements();
      assert.ok(plans.length >= 25, `expected the workload to prepare many statements, got ${plans.length}`);
      for (const { sql, plan } of plans) {
        for (const line of plan) {
          assert.doesNotMatch(
            line,
            /^SCAN (tasks|t|o|task_events|threads|th|messages)$/,
            `full scan in:\n${sql}\n${plan.join('\n')}`,
          );
        }
      }
      const planOf = (needle: string): string => {
        const hit = plans.find((p) => p.sql.includes(needle));
        assert.ok(hit, `no statement containing ${needle}`);
        return hit.plan.join('\n');
      };
      assert.match(planOf("WHERE t.status = 'queued'"), /USING INDEX tasks_queue/);
      assert.doesNotMatch(planOf("WHERE t.status = 'queued'"), /TEMP B-TREE/);
      assert.match(planOf('GROUP BY owner'), /tasks_running/);
      assert.match(planOf("AND status = 'queued' AND status IN"), /tasks_active/);
      assert.match(planOf('SET lease_until = ?'), /INDEX sqlite_autoindex_tasks_1 \(id=\?\)/); // the held ids, one by one
      assert.match(planOf('DELETE FROM tasks WHERE status IN'), /tasks_ended/);
      assert.match(planOf('input_hash = ?'), /tasks_cache/);
      assert.match(planOf('+owner = ?'), /tasks_thread/);
    } finally {
      await s.close();
    }
  });
});

describe('LocalNotifier', () => {
  it('reports a throwing listener to its error handler and still delivers to the rest', async () => {
    const errors: unknown[] = [];
    const n = new LocalNotifier((e) => errors.push(e));
    const got: string[] = [];
    n.subscribe('events', () => {
      throw new Error('bad');
    });
    n.subscribe('events', (p) => got.push(p));
    await n.publish('events', 'task_1:2');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(got, ['task_1:2']);
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as Error).message, 'bad');
  });

  it('a listener that publishes is not re-entered', async () => {
    const n = new LocalNotifier();
    const order: string[] = [];
    n.subscribe('wakeup', (p) => {
      order.push(`start ${p}`);
      if (p === '1') void n.publish('wakeup', '2');
      order.push(`end ${p}`);
    });
    await n.publish('wakeup', '1');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ['start 1', 'end 1', 'start 2', 'end 2']);
    const off = n.subscribe('wakeup', () => {});
    assert.equal(n.listenerCount('wakeup'), 2);
    off();
    assert.equal(n.listenerCount('wakeup'), 1);
  });
});
