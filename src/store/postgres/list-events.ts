// listEvents on PostgreSQL: a task's events after a seq, in order.

import type { TaskEvent } from '../../core/types.ts';
import { rowLimit } from '../paging.ts';
import type { PgDb } from './db.ts';
import { toEvent, type PgEventRow } from './rows.ts';

const LIST = 'SELECT * FROM task_events WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3';

export async function listEvents(db: PgDb, taskId: string, afterSeq: number, limit?: number): Promise<TaskEvent[]> {
  const values = [taskId, afterSeq, limit === undefined ? null : rowLimit(limit)];
  return (await db.q<PgEventRow>(LIST, values, 'leash_list_events')).rows.map(toEvent);
}
