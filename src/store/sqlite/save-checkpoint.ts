// saveCheckpoint on SQLite: a running task's resumable state, kept on its row.

import type { SqliteDb } from './db.ts';
import { toJson } from './rows.ts';

export function saveCheckpoint(db: SqliteDb, taskId: string, state: unknown): void {
  db.q('UPDATE tasks SET checkpoint = ? WHERE id = ?').run(toJson(state), taskId);
}
