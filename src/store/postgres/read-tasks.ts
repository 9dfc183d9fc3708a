// The task reads on PostgreSQL: one task, a page of an owner's tasks, the ids a batch
// cancel selects, counts by status, and the per-type result cache.

import type { BatchCancelFilter, ListTasksFilter, Page, Task, TaskStatus } from '../../core/types.ts';
import { clampLimit, pageOf, pageStart } from '../paging.ts';
import { activeStatuses, listedStatuses, onlyActive, ownedBy, zeroCounts } from '../task-filters.ts';
import type { PgDb } from './db.ts';
import { toTask, type PgTaskRow } from './rows.ts';

// Two scans of partial indexes (active rows, ended rows) rather than one of the table.
const COUNT_BY_STATUS = `SELECT status, count(*)::int AS n FROM tasks WHERE status IN ('queued', 'running', 'cancelling') GROUP BY status
         UNION ALL
         SELECT status, count(*)::int FROM tasks WHERE status IN ('completed', 'failed', 'cancelled') GROUP BY status`;
const CACHED = `SELECT * FROM tasks WHERE owner = $1 AND type = $2 AND input_hash = $3 AND status = 'completed'
           AND created_at >= $4 ORDER BY num DESC LIMIT 1`;

export async function getTask(db: PgDb, id: string, owner?: string): Promise<Task | null> {
  const row = (await db.q<PgTaskRow>('SELECT * FROM tasks WHERE id = $1', [id], 'leash_get_task')).rows[0];
  return ownedBy(row, owner) ? toTask(row) : null;
}

export async function listTasks(db: PgDb, filter: ListTasksFilter): Promise<Page<Task>> {
  const limit = clampLimit(filter.limit);
  const before = pageStart('t', filter.cursor);
  const params: unknown[] = [filter.owner, before];
  const where = ['owner = $1', 'num < $2'];
  const statuses = listedStatuses(filter);
  if (filter.thread_id !== undefined) {
    params.push(filter.thread_id);
    where.push(`thread_id = $${params.length}`);
  }
  if (statuses !== null) {
    if (onlyActive(statuses)) where.push(`status IN ('queued', 'running', 'cancelling')`);
    params.push(statuses);
    where.push(`status = ANY($${params.length}::text[])`);
  }
  if (filter.type !== undefined) {
    params.push(filter.type);
    where.push(`type = $${params.length}`);
  }
  params.push(limit + 1);
  const sql = `SELECT * FROM tasks WHERE ${where.join(' AND ')} ORDER BY num DESC LIMIT $${params.length}`;
  const rows = (await db.q<PgTaskRow>(sql, params)).rows;
  return pageOf(rows, limit, 't', toTask);
}

export async function findActiveTaskIds(db: PgDb, filter: BatchCancelFilter): Promise<string[]> {
  const statuses = activeStatuses(filter);
  if (statuses.length === 0) return [];
  const params: unknown[] = [filter.owner, statuses];
  const where = ['owner = $1', `status IN ('queued', 'running', 'cancelling')`, 'status = ANY($2::text[])'];
  if (filter.type !== undefined) {
    params.push(filter.type);
    where.push(`type = $${params.length}`);
  }
  if (filter.thread_id !== undefined) {
    params.push(filter.thread_id);
    where.push(`thread_id = $${params.length}`);
  }
  if (filter.created_before !== undefined) {
    params.push(filter.created_before);
    where.push(`created_at < $${params.length}`);
  }
  const sql = `SELECT id FROM tasks WHERE ${where.join(' AND ')} ORDER BY num`;
  return (await db.q<{ id: string }>(sql, params)).rows.map((r) => r.id);
}

export async function countByStatus(db: PgDb): Promise<Record<TaskStatus, number>> {
  const out = zeroCounts();
  const rows = (await db.q<{ status: TaskStatus; n: number }>(COUNT_BY_STATUS, [], 'leash_count_by_status')).rows;
  for (const r of rows) out[r.status] = r.n;
  return out;
}

export async function findCachedResult(
  db: PgDb,
  owner: string,
  type: string,
  inputHash: string,
  since: string,
): Promise<Task | null> {
  const row = (await db.q<PgTaskRow>(CACHED, [owner, type, inputHash, since], 'leash_cached')).rows[0];
  return row ? toTask(row) : null;
}
