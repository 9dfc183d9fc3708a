// Stopping a task on SQLite: a queued one ends at once (cancelQueued); a running one
// is asked to stop (requestCancel: its node writes the events); one whose handler was
// left running past its grace is marked detached (markDetached).

import type { CancelReason, Task } from '../../core/types.ts';
import type { SqliteDb } from './db.ts';
import { insertEvent } from './insert-event.ts';
import { toTask, type TaskRow } from './rows.ts';

const CANCEL_QUEUED = `UPDATE tasks SET status = 'cancelled', cancel_reason = ?, cancel_requested_at = ?, ended_at = ?,
           last_seq = last_seq + 1
         WHERE id = ? AND status = 'queued' RETURNING *`;
const REQUEST_CANCEL = `UPDATE tasks SET status = 'cancelling', cancel_reason = ?, cancel_requested_at = ?
       WHERE id = ? AND status = 'running' RETURNING *`;

export function cancelQueued(db: SqliteDb, id: string, reason: CancelReason, now: string): Task | null {
  return db.tx(() => {
    const row = db.q(CANCEL_QUEUED).get(reason, now, now, id) as TaskRow | undefined;
    if (!row) return null;
    const data = { reason, output_text: row.output_text };
    insertEvent(db, id, row.last_seq, 'task.cancelled', JSON.stringify(data), now);
    return toTask(row);
  });
}

export function requestCancel(db: SqliteDb, id: string, reason: CancelReason, now: string): Task | null {
  const row = db.q(REQUEST_CANCEL).get(reason, now, id) as TaskRow | undefined;
  return row ? toTask(row) : null;
}

export function markDetached(db: SqliteDb, id: string): void {
  db.q('UPDATE tasks SET cancel_detached = 1 WHERE id = ?').run(id);
}
