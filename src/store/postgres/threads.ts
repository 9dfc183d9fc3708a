// Threads on PostgreSQL. A thread's status is derived (busy while any of its tasks is
// active), so every read selects it with THREAD_COLUMNS.

import type { Page } from '../../core/types.ts';
import { clampLimit, pageOf, pageStart } from '../paging.ts';
import type { NewThread, Thread } from '../store.ts';
import { ownedBy } from '../task-filters.ts';
import type { PgDb } from './db.ts';
import { toThread, type PgThreadRow } from './rows.ts';

const THREAD_COLUMNS = `th.num, th.id, th.owner, th.created_at, th.metadata,
  EXISTS (SELECT 1 FROM tasks t WHERE t.thread_id = th.id AND t.status IN ('queued', 'running', 'cancelling')) AS busy`;
const CREATE = `WITH th AS (
           INSERT INTO threads (id, owner, created_at, metadata) VALUES ($1, $2, $3, $4::json) RETURNING *
         )
         SELECT ${THREAD_COLUMNS} FROM th`;
const GET = `SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.id = $1`;
const LIST = `SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.owner = $1 AND th.num < $2 ORDER BY th.num DESC LIMIT $3`;

export async function createThread(db: PgDb, t: NewThread): Promise<Thread> {
  const values = [t.id, t.owner, t.created_at, JSON.stringify(t.metadata ?? {})];
  return toThread((await db.q<PgThreadRow>(CREATE, values)).rows[0]!);
}

export async function getThread(db: PgDb, id: string, owner?: string): Promise<Thread | null> {
  const row = (await db.q<PgThreadRow>(GET, [id], 'leash_get_thread')).rows[0];
  return ownedBy(row, owner) ? toThread(row) : null;
}

export async function listThreads(db: PgDb, owner: string, limit: number, cursor?: string): Promise<Page<Thread>> {
  const n = clampLimit(limit);
  const before = pageStart('h', cursor);
  const rows = (await db.q<PgThreadRow>(LIST, [owner, before, n + 1])).rows;
  return pageOf(rows, n, 'h', toThread);
}

export async function deleteThread(db: PgDb, id: string, owner: string): Promise<boolean> {
  // Messages go with the thread (ON DELETE CASCADE). Tasks keep their thread_id as history.
  return ((await db.q('DELETE FROM threads WHERE id = $1 AND owner = $2', [id, owner])).rowCount ?? 0) > 0;
}
