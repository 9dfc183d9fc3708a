// What a task filter asks for, decided once for every store: each store then only
// writes the SQL for it.

import { TASK_STATUSES, TERMINAL_STATUSES } from '../core/types.ts';
import type { BatchCancelFilter, ListTasksFilter, TaskStatus } from '../core/types.ts';

const NON_TERMINAL: TaskStatus[] = TASK_STATUSES.filter((s) => !TERMINAL_STATUSES.has(s));

/** The distinct statuses a task list asks for; null = any status. */
export function listedStatuses(filter: ListTasksFilter): TaskStatus[] | null {
  return filter.status !== undefined && filter.status.length > 0 ? [...new Set(filter.status)] : null;
}

/** True when every status asked for is active (queued, running, cancelling): few rows per owner. */
export const onlyActive = (statuses: readonly TaskStatus[]): boolean =>
  statuses.every((s) => !TERMINAL_STATUSES.has(s));

/** The distinct non-terminal statuses a batch cancel selects (all of them when none is given); may be empty. */
export function activeStatuses(filter: BatchCancelFilter): TaskStatus[] {
  const wanted = filter.status !== undefined && filter.status.length > 0 ? filter.status : NON_TERMINAL;
  return [...new Set(wanted.filter((s) => !TERMINAL_STATUSES.has(s)))];
}

/** A count of 0 for every status, for countByStatus to fill in. */
export const zeroCounts = (): Record<TaskStatus, number> =>
  Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;

/** A row found by id is the caller's only when no owner is asked for or it is the owner's (else: as if absent). */
export const ownedBy = <R extends { owner: string }>(row: R | undefined, owner: string | undefined): row is R =>
  row !== undefined && (owner === undefined || row.owner === owner);
