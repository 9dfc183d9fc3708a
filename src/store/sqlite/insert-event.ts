// The one INSERT of an event row every SQLite operation that writes an event uses,
// with its constraint failures as the LeashErrors the runtime acts on.

import { LeashError } from '../../core/errors.ts';
import {
  errcodeOf,
  SQLITE_CONSTRAINT_FOREIGNKEY,
  SQLITE_CONSTRAINT_PRIMARYKEY,
  SQLITE_CONSTRAINT_UNIQUE,
  type SqliteDb,
} from './db.ts';

const INSERT_EVENT = 'INSERT INTO task_events (task_id, seq, type, created_at, data) VALUES (?, ?, ?, ?, ?)';

/** Seq taken → `event_conflict`; task gone → `not_found` (both name the task in details). */
export function insertEvent(
  db: SqliteDb,
  taskId: string,
  seq: number,
  type: string,
  data: string,
  createdAt: string,
): void {
  try {
    db.q(INSERT_EVENT).run(taskId, seq, type, createdAt, data);
  } catch (e) {
    const code = errcodeOf(e);
    if (code === SQLITE_CONSTRAINT_PRIMARYKEY || code === SQLITE_CONSTRAINT_UNIQUE) {
      throw new LeashError('event_conflict', `task ${taskId} already has an event with seq ${seq}`, {
        details: { task_id: taskId, seq },
        cause: e,
      });
    }
    if (code === SQLITE_CONSTRAINT_FOREIGNKEY) {
      throw new LeashError('not_found', `task ${taskId} does not exist`, { details: { task_id: taskId }, cause: e });
    }
    throw e;
  }
}
