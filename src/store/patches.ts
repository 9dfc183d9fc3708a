// A writeEvents batch folded per task: events are written one per row, but a task's
// row patches become one row update (a batch of fifty deltas is one update, not
// fifty). Shared by every store; each writes the merged patch in its own SQL.

import type { CancelReason, TaskStatus } from '../core/types.ts';
import type { EventWrite, TaskPatch } from './store.ts';

/** A task's patches within one batch, folded; an absent field is left as it is. */
export interface MergedPatch {
  /** The batch's first seq of the task: it must be above the row's last_seq (the fence). */
  first: number;
  /** The batch's highest seq of the task: the row's new last_seq. */
  seq: number;
  /** Every `append_output` of the batch, in order. */
  append: string;
  status?: TaskStatus;
  progress?: number | null;
  progress_message?: string | null;
  /** `null` is a value to store; only undefined means "leave it". */
  result?: unknown;
  error?: unknown;
  cancel?: { reason: CancelReason; requested_at: string } | null;
  ended_at?: string | null;
}

/** The batch's patches by task id, in the order each task first appears. */
export function mergePatches(writes: readonly EventWrite[]): Map<string, MergedPatch> {
  const merged = new Map<string, MergedPatch>();
  for (const { event, patch } of writes) {
    let m = merged.get(event.task_id);
    if (m === undefined) {
      m = { first: event.seq, seq: event.seq, append: '' };
      merged.set(event.task_id, m);
    } else if (event.seq > m.seq) m.seq = event.seq;
    if (patch !== undefined) foldPatch(m, patch);
  }
  return merged;
}

function foldPatch(m: MergedPatch, p: TaskPatch): void {
  if (p.append_output !== undefined) m.append += p.append_output;
  if (p.status !== undefined) m.status = p.status;
  if (p.progress !== undefined) m.progress = p.progress;
  if (p.progress_message !== undefined) m.progress_message = p.progress_message;
  if (p.result !== undefined) m.result = p.result;
  if (p.error !== undefined) m.error = p.error;
  if (p.cancel !== undefined) m.cancel = p.cancel;
  if (p.ended_at !== undefined) m.ended_at = p.ended_at;
}

/** True when the merged patch only appends output (the common streaming batch). */
export const onlyAppends = (m: MergedPatch): boolean =>
  m.status === undefined &&
  m.progress === undefined &&
  m.progress_message === undefined &&
  m.result === undefined &&
  m.error === undefined &&
  m.cancel === undefined &&
  m.ended_at === undefined;
