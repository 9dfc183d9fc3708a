// listEvents on SQLite: a task's events after a seq, in order.

import type { TaskEvent } from '../../core/types.ts';
import { rowLimit } from '../paging.ts';
import type { SqliteDb } from './db.ts';
import { toEvent, type EventRow } from './rows.ts';

export function listEvents(db: SqliteDb, taskId: string, afterSeq: number, limit?: number): TaskEvent[] {
  const rows = db
    .q('SELECT * FROM task_events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?')
    .all(taskId, afterSeq, limit === undefined ? -1 : rowLimit(limit)) as unknown as EventRow[];
  return rows.map(toEvent);
}
