// expireQueued on PostgreSQL (the reaper): queued tasks past their deadline end
// cancelled, with their events, in one statement.

import type { Task } from '../../core/types.ts';
import type { PgDb } from './db.ts';
import { toTask, type PgTaskRow } from './rows.ts';

// SKIP LOCKED: a row a claim holds is being started or skipped by it (claims skip
// expired tasks); another node's reaper may hold it too. The next pass sees it.
const EXPIRE = `WITH due AS (
           SELECT id FROM tasks WHERE status = 'queued' AND deadline_at <= $1
           ORDER BY deadline_at LIMIT $2 FOR UPDATE SKIP LOCKED
         ), up AS (
           UPDATE tasks t SET status = 'cancelled', cancel_reason = 'deadline', cancel_requested_at = t.deadline_at,
             ended_at = $1, last_seq = t.last_seq + 1
           FROM due WHERE t.id = due.id AND t.status = 'queued' RETURNING t.*
         ), ev AS (
           INSERT INTO task_events (task_id, seq, type, created_at, data)
           SELECT id, last_seq, 'task.cancelled', $1, json_build_object('reason', 'deadline', 'output_text', output_text)
           FROM up
         )
         SELECT * FROM up`;

export async function expireQueued(db: PgDb, now: string, limit = 256): Promise<Task[]> {
  return (await db.q<PgTaskRow>(EXPIRE, [now, limit], 'leash_expire_queued')).rows.map(toTask);
}
