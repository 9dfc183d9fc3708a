// Deleting tasks on PostgreSQL: one ended task of its owner, or every task that ended
// before a time (retention). Events go with their task (ON DELETE CASCADE).

import { TERMINAL_STATUSES, type TaskStatus } from '../../core/types.ts';
import type { PgDb } from './db.ts';

export async function deleteTask(db: PgDb, id: string, owner: string): Promise<1 | 0 | 'active'> {
  const del = await db.q(
    `DELETE FROM tasks WHERE id = $1 AND owner = $2 AND status IN ('completed', 'failed', 'cancelled')`,
    [id, owner],
  );
  if ((del.rowCount ?? 0) > 0) return 1;
  const left = (
    await db.q<{ status: TaskStatus }>('SELECT status FROM tasks WHERE id = $1 AND owner = $2', [id, owner])
  ).rows[0];
  if (!left) return 0;
  return TERMINAL_STATUSES.has(left.status) ? 0 : 'active';
}

export async function purgeEnded(db: PgDb, endedBefore: string): Promise<number> {
  // rowCount counts only tasks, not their cascaded events.
  const res = await db.q(
    `DELETE FROM tasks WHERE status IN ('completed', 'failed', 'cancelled') AND ended_at < $1`,
    [endedBefore],
    'leash_purge',
  );
  return res.rowCount ?? 0;
}
