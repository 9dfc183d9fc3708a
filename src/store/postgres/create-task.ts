// createTask on PostgreSQL: one statement, the insert (skipped on a full queue or a
// repeated Idempotency-Key) and its event; with an eager start, one call of
// leash_create (migrations 4 and 5), which also decides whether the task starts at
// once. The queue limit is checked in the same statement, so it is exact per node and
// may be overshot by a create racing on another node: a soft limit, as queue limits are.

import { addMs } from '../lease.ts';
import type { CreateTaskOptions, CreateTaskResult, NewTask } from '../store.ts';
import type { PgDb } from './db.ts';
import { toJson, toTask, type PgTaskRow } from './rows.ts';

/** The plain create: insert and `task.queued`; counting the owner's queue stops at the limit. */
const CREATE = `WITH ins AS (
    INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at,
      idempotency_key, input_hash, input, options, last_seq)
    SELECT $1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10::json, $11::json, 1
    WHERE (SELECT count(*) FROM (SELECT 1 FROM tasks WHERE owner = $3 AND status = 'queued' LIMIT $12) q) < $12
    ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING *
  ), ev AS (
    INSERT INTO task_events (task_id, seq, type, created_at, data)
    SELECT id, 1, 'task.queued', created_at, '{}' FROM ins
  )
  SELECT * FROM ins`;
const CREATE_EAGER =
  'SELECT * FROM leash_create($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json, $11::json, $12, $13, $14, $15, $16)';
const BY_IDEMPOTENCY_KEY = 'SELECT * FROM tasks WHERE owner = $1 AND idempotency_key = $2';
const QUEUED_COUNT = `SELECT count(*)::int AS n FROM tasks WHERE owner = $1 AND status = 'queued'`;

export async function createTask(db: PgDb, t: NewTask, opts: CreateTaskOptions): Promise<CreateTaskResult> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const on = opts.startOn;
    const base = [
      t.id,
      t.type,
      t.owner,
      t.priority,
      t.thread_id,
      t.created_at,
      t.deadline_at,
      t.idempotency_key,
      t.input_hash,
      toJson(t.input) ?? 'null',
      t.options === null ? null : toJson(t.options),
      opts.maxQueuedPerOwner,
    ];
    const ins =
      on === undefined || t.thread_id !== null
        ? await db.q<PgTaskRow>(CREATE, base, 'leash_create')
        : await db.q<PgTaskRow>(
            CREATE_EAGER,
            [...base, on.nodeId, on.maxRunningPerOwner, on.now, addMs(on.now, on.leaseMs)],
            'leash_create_eager',
          );
    const row = ins.rows[0];
    if (row) {
      const task = toTask(row);
      if (row.status !== 'running') return { kind: 'created', task };
      return { kind: 'created', task, started: { task, lastSeq: row.last_seq, checkpoint: null, options: t.options } };
    }
    if (t.idempotency_key !== null) {
      const prior = await db.q<PgTaskRow>(BY_IDEMPOTENCY_KEY, [t.owner, t.idempotency_key]);
      if (prior.rows[0]) return { kind: 'existing', task: toTask(prior.rows[0]) };
    }
    const queued = await queuedCount(db, t.owner);
    if (queued >= opts.maxQueuedPerOwner) return { kind: 'queue_full', queued };
    // The queue drained (or the keyed task was deleted) in between: try again.
  }
  return { kind: 'queue_full', queued: await queuedCount(db, t.owner) };
}

async function queuedCount(db: PgDb, owner: string): Promise<number> {
  return (await db.q<{ n: number }>(QUEUED_COUNT, [owner], 'leash_queued_count')).rows[0]!.n;
}
