// Threads on SQLite. A thread's status is derived (busy while any of its tasks is
// active), so every read selects it with THREAD_COLUMNS.

import type { Page } from '../../core/types.ts';
import { clampLimit, pageOf, pageStart } from '../paging.ts';
import type { NewThread, Thread } from '../store.ts';
import { ownedBy } from '../task-filters.ts';
import type { SqliteDb } from './db.ts';
import { toThread, type ThreadRow } from './rows.ts';

const THREAD_COLUMNS = `th.num, th.id, th.owner, th.created_at, th.metadata,
  EXISTS (SELECT 1 FROM tasks t WHERE t.thread_id = th.id AND t.status IN ('queued', 'running', 'cancelling')) AS busy`;
const GET = `SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.id = ?`;

export function createThread(db: SqliteDb, t: NewThread): Thread {
  return db.tx(() => {
    db.q('INSERT INTO threads (id, owner, created_at, metadata) VALUES (?, ?, ?, ?)').run(
      t.id,
      t.owner,
      t.created_at,
      JSON.stringify(t.metadata ?? {}),
    );
    return toThread(db.q(GET).get(t.id) as unknown as ThreadRow);
  });
}

export function getThread(db: SqliteDb, id: string, owner?: string): Thread | null {
  const row = db.q(GET).get(id) as ThreadRow | undefined;
  return ownedBy(row, owner) ? toThread(row) : null;
}

export function listThreads(db: SqliteDb, owner: string, limit: number, cursor?: string): Page<Thread> {
  const n = clampLimit(limit);
  const before = pageStart('h', cursor);
  const rows = db
    .q(`SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.owner = ? AND th.num < ? ORDER BY th.num DESC LIMIT ?`)
    .all(owner, before, n + 1) as unknown as ThreadRow[];
  return pageOf(rows, n, 'h', toThread);
}

export function deleteThread(db: SqliteDb, id: string, owner: string): boolean {
  // Messages go with the thread (ON DELETE CASCADE). Tasks keep their thread_id as history.
  return Number(db.q('DELETE FROM threads WHERE id = ? AND owner = ?').run(id, owner).changes) > 0;
}
