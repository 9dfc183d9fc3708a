// expireQueued on SQLite (the reaper): queued tasks past their deadline end cancelled.

import type { Task } from '../../core/types.ts';
import type { SqliteDb } from './db.ts';
import { insertEvent } from './insert-event.ts';
import { toTask, type TaskRow } from './rows.ts';

const DUE = `SELECT id FROM tasks INDEXED BY tasks_queued_deadline WHERE status = 'queued' AND deadline_at <= ?
       ORDER BY deadline_at LIMIT ?`;
const END = `UPDATE tasks SET status = 'cancelled', cancel_reason = 'deadline', cancel_requested_at = deadline_at,
           ended_at = ?1, last_seq = last_seq + 1
         WHERE id = ?2 AND status = 'queued' AND deadline_at <= ?1 RETURNING *`;

export function expireQueued(db: SqliteDb, now: string, limit = 256): Task[] {
  // Read first, outside a write transaction: almost always nothing is due.
  const due = db.q(DUE).all(now, limit) as Array<{ id: string }>;
  if (due.length === 0) return [];
  return db.tx(() => {
    const out: Task[] = [];
    const end = db.q(END);
    for (const { id } of due) {
      const row = end.get(now, id) as TaskRow | undefined;
      if (!row) continue;
      const data = { reason: 'deadline', output_text: row.output_text };
      insertEvent(db, id, row.last_seq, 'task.cancelled', JSON.stringify(data), now);
      out.push(toTask(row));
    }
    return out;
  });
}
