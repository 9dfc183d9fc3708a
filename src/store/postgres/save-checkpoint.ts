// saveCheckpoint on PostgreSQL: a running task's resumable state, kept on its row.

import type { PgDb } from './db.ts';
import { toJson } from './rows.ts';

export async function saveCheckpoint(db: PgDb, taskId: string, state: unknown): Promise<void> {
  await db.q('UPDATE tasks SET checkpoint = $2::json WHERE id = $1', [taskId, toJson(state)], 'leash_checkpoint');
}
