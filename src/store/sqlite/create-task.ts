// createTask on SQLite: one write transaction (one writer at a time, so the queue
// count and the eager-start checks below are exact).

import { addMs } from '../lease.ts';
import type { CreateTaskOptions, CreateTaskResult, NewTask } from '../store.ts';
import { ACTIVE, type SqliteDb } from './db.ts';
import { insertEvent } from './insert-event.ts';
import { toJson, toTask, type TaskRow } from './rows.ts';

const BY_IDEMPOTENCY_KEY = 'SELECT * FROM tasks WHERE owner = ? AND idempotency_key = ?';
// Bounded by the limit itself (creates stop there), and served by the small active index.
const QUEUED_OF_OWNER = `SELECT COUNT(*) AS n FROM tasks WHERE owner = ? AND status = 'queued' AND ${ACTIVE}`;
const QUEUED_AT_OR_ABOVE = `SELECT 1 FROM tasks WHERE status = 'queued' AND priority >= ? LIMIT 1`;
// ACTIVE steers SQLite to the small active index (else it walks the owner's history).
const RUNNING_OF_OWNER = `SELECT COUNT(*) AS n FROM tasks WHERE owner = ? AND status IN ('running', 'cancelling') AND ${ACTIVE}`;
const INSERT = `INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at,
           idempotency_key, input_hash, input, options, last_seq, started_at, node_id, lease_until, attempt)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`;

export function createTask(db: SqliteDb, t: NewTask, opts: CreateTaskOptions): CreateTaskResult {
  return db.tx((): CreateTaskResult => {
    if (t.idempotency_key !== null) {
      const prior = db.q(BY_IDEMPOTENCY_KEY).get(t.owner, t.idempotency_key) as TaskRow | undefined;
      if (prior) return { kind: 'existing', task: toTask(prior) };
    }
    const queued = (db.q(QUEUED_OF_OWNER).get(t.owner) as { n: number }).n;
    if (queued >= opts.maxQueuedPerOwner) return { kind: 'queue_full', queued };
    // Eager start: exactly when a claim would take this task next.
    const on = opts.startOn;
    const start =
      on !== undefined &&
      t.thread_id === null &&
      on.maxRunningPerOwner > 0 &&
      db.q(QUEUED_AT_OR_ABOVE).get(t.priority) === undefined &&
      (db.q(RUNNING_OF_OWNER).get(t.owner) as { n: number }).n < on.maxRunningPerOwner;
    const row = db
      .q(INSERT)
      .get(
        t.id,
        t.type,
        t.owner,
        start ? 'running' : 'queued',
        t.priority,
        t.thread_id,
        t.created_at,
        t.deadline_at,
        t.idempotency_key,
        t.input_hash,
        toJson(t.input) ?? 'null',
        t.options === null ? null : (toJson(t.options) ?? null),
        start ? 2 : 1,
        start ? on.now : null,
        start ? on.nodeId : null,
        start ? addMs(on.now, on.leaseMs) : null,
        start ? 1 : 0,
      ) as unknown as TaskRow;
    insertEvent(db, t.id, 1, 'task.queued', '{}', t.created_at);
    if (!start) return { kind: 'created', task: toTask(row) };
    insertEvent(db, t.id, 2, 'task.started', JSON.stringify({ attempt: 1 }), on.now);
    const task = toTask(row);
    return { kind: 'created', task, started: { task, lastSeq: 2, checkpoint: null, options: t.options } };
  });
}
