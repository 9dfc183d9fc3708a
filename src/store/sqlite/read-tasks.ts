// The task reads on SQLite: one task, a page of an owner's tasks, the ids a batch
// cancel selects, counts by status, and the per-type result cache.

import type { SQLInputValue } from 'node:sqlite';
import type { BatchCancelFilter, ListTasksFilter, Page, Task, TaskStatus } from '../../core/types.ts';
import { clampLimit, pageOf, pageStart } from '../paging.ts';
import { activeStatuses, listedStatuses, onlyActive, ownedBy, zeroCounts } from '../task-filters.ts';
import { ACTIVE, TERMINAL, type SqliteDb } from './db.ts';
import { toTask, type TaskRow } from './rows.ts';

export function getTask(db: SqliteDb, id: string, owner?: string): Task | null {
  const row = db.q('SELECT * FROM tasks WHERE id = ?').get(id) as TaskRow | undefined;
  return ownedBy(row, owner) ? toTask(row) : null;
}

export function listTasks(db: SqliteDb, filter: ListTasksFilter): Page<Task> {
  const limit = clampLimit(filter.limit);
  const before = pageStart('t', filter.cursor);
  // One statement per combination of filters present (a handful of texts, each
  // prepared once), so the planner sees real predicates. Index choice is pinned
  // where statistics could mislead it: with one owner (`local`) owning everything,
  // the owner index says nothing about a thread or the few active tasks.
  const where = ['owner = ?', 'num < ?'];
  const params: SQLInputValue[] = [filter.owner, before];
  let from = 'tasks';
  const statuses = listedStatuses(filter);
  if (filter.thread_id !== undefined) {
    where[0] = '+owner = ?'; // not the owner index: the thread's own index is far narrower
    where.push('thread_id = ?');
    params.push(filter.thread_id);
  } else if (statuses !== null && onlyActive(statuses)) {
    from = 'tasks INDEXED BY tasks_active'; // active tasks are few per owner (queue limits)
    where.push(ACTIVE);
  }
  if (statuses !== null) {
    where.push(statuses.length === 1 ? 'status = ?' : `status IN (${statuses.map(() => '?').join(', ')})`);
    params.push(...statuses);
  }
  if (filter.type !== undefined) {
    where.push('type = ?');
    params.push(filter.type);
  }
  params.push(limit + 1);
  const rows = db
    .q(`SELECT * FROM ${from} WHERE ${where.join(' AND ')} ORDER BY num DESC LIMIT ?`)
    .all(...params) as unknown as TaskRow[];
  return pageOf(rows, limit, 't', toTask);
}

export function findActiveTaskIds(db: SqliteDb, filter: BatchCancelFilter): string[] {
  const statuses = activeStatuses(filter);
  if (statuses.length === 0) return [];
  const where = ['owner = ?', ACTIVE, `status IN (${statuses.map(() => '?').join(', ')})`];
  const params: SQLInputValue[] = [filter.owner, ...statuses];
  if (filter.type !== undefined) {
    where.push('type = ?');
    params.push(filter.type);
  }
  if (filter.thread_id !== undefined) {
    where.push('thread_id = ?');
    params.push(filter.thread_id);
  }
  if (filter.created_before !== undefined) {
    where.push('created_at < ?');
    params.push(filter.created_before);
  }
  const rows = db
    .q(`SELECT id FROM tasks INDEXED BY tasks_active WHERE ${where.join(' AND ')} ORDER BY num`)
    .all(...params) as Array<{ id: string }>;
  return rows.map((r) => r.id);
}

export function countByStatus(db: SqliteDb): Record<TaskStatus, number> {
  const out = zeroCounts();
  // Two index-only scans (active rows, ended rows) rather than one over the table.
  for (const where of [ACTIVE, TERMINAL]) {
    const rows = db.q(`SELECT status, COUNT(*) AS n FROM tasks WHERE ${where} GROUP BY status`).all() as Array<{
      status: TaskStatus;
      n: number;
    }>;
    for (const r of rows) out[r.status] = r.n;
  }
  return out;
}

export function findCachedResult(
  db: SqliteDb,
  owner: string,
  type: string,
  inputHash: string,
  since: string,
): Task | null {
  const row = db
    .q(
      `SELECT * FROM tasks WHERE owner = ? AND type = ? AND input_hash = ? AND status = 'completed' AND created_at >= ?
       ORDER BY num DESC LIMIT 1`,
    )
    .get(owner, type, inputHash, since) as TaskRow | undefined;
  return row ? toTask(row) : null;
}
