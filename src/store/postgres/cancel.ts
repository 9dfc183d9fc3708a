// Stopping a task on PostgreSQL: a queued one ends at once (cancelQueued, its row
// change and event in one statement); a running one is asked to stop (requestCancel:
// its node writes the events); one whose handler was left running past its grace is
// marked detached (markDetached).

import type { CancelReason, Task } from '../../core/types.ts';
import type { PgDb } from './db.ts';
import { toTask, type PgTaskRow } from './rows.ts';

const CANCEL_QUEUED = `WITH up AS (
           UPDATE tasks SET status = 'cancelled', cancel_reason = $2, cancel_requested_at = $3, ended_at = $3,
             last_seq = last_seq + 1
           WHERE id = $1 AND status = 'queued' RETURNING *
         ), ev AS (
           INSERT INTO task_events (task_id, seq, type, created_at, data)
           SELECT id, last_seq, 'task.cancelled', $3, json_build_object('reason', cancel_reason, 'output_text', output_text)
           FROM up
         )
         SELECT * FROM up`;
const REQUEST_CANCEL = `UPDATE tasks SET status = 'cancelling', cancel_reason = $2, cancel_requested_at = $3
         WHERE id = $1 AND status = 'running' RETURNING *`;

export async function cancelQueued(db: PgDb, id: string, reason: CancelReason, now: string): Promise<Task | null> {
  const row = (await db.q<PgTaskRow>(CANCEL_QUEUED, [id, reason, now], 'leash_cancel_queued')).rows[0];
  return row ? toTask(row) : null;
}

export async function requestCancel(db: PgDb, id: string, reason: CancelReason, now: string): Promise<Task | null> {
  const row = (await db.q<PgTaskRow>(REQUEST_CANCEL, [id, reason, now], 'leash_request_cancel')).rows[0];
  return row ? toTask(row) : null;
}

export async function markDetached(db: PgDb, id: string): Promise<void> {
  await db.q('UPDATE tasks SET cancel_detached = true WHERE id = $1', [id], 'leash_mark_detached');
}
