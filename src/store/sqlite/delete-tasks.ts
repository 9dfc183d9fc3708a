// Deleting tasks on SQLite: one ended task of its owner, or every task that ended
// before a time (retention). Events go with their task (ON DELETE CASCADE).

import { TERMINAL_STATUSES, type TaskStatus } from '../../core/types.ts';
import type { SqliteDb } from './db.ts';

export function deleteTask(db: SqliteDb, id: string, owner: string): 1 | 0 | 'active' {
  return db.tx(() => {
    const row = db.q('SELECT status FROM tasks WHERE id = ? AND owner = ?').get(id, owner) as
      { status: TaskStatus } | undefined;
    if (!row) return 0;
    if (!TERMINAL_STATUSES.has(row.status)) return 'active';
    db.q('DELETE FROM tasks WHERE id = ?').run(id);
    return 1;
  });
}

export function purgeEnded(db: SqliteDb, endedBefore: string): number {
  // `changes` counts only tasks, not their cascaded events.
  const res = db
    .q(`DELETE FROM tasks WHERE status IN ('completed', 'failed', 'cancelled') AND ended_at < ?`)
    .run(endedBefore);
  return Number(res.changes);
}
