// writeEvents on SQLite: one write transaction; events are inserted one by one, and
// each task's row patches (folded by ../patches.ts) become one row update, fenced on
// the row's last_seq.

import { LeashError } from '../../core/errors.ts';
import { mergePatches, onlyAppends, type MergedPatch } from '../patches.ts';
import type { EventWrite } from '../store.ts';
import type { SqliteDb } from './db.ts';
import { insertEvent } from './insert-event.ts';
import { toJson } from './rows.ts';

const UPDATE = `UPDATE tasks SET
           status = CASE WHEN :set_status THEN :status ELSE status END,
           progress = CASE WHEN :set_progress THEN :progress ELSE progress END,
           progress_message = CASE WHEN :set_progress_message THEN :progress_message ELSE progress_message END,
           output_text = output_text || :append,
           result = CASE WHEN :set_result THEN :result ELSE result END,
           error = CASE WHEN :set_error THEN :error ELSE error END,
           cancel_reason = CASE WHEN :set_cancel THEN :cancel_reason ELSE cancel_reason END,
           cancel_requested_at = CASE WHEN :set_cancel THEN :cancel_requested_at ELSE cancel_requested_at END,
           ended_at = CASE WHEN :set_ended_at THEN :ended_at ELSE ended_at END,
           last_seq = MAX(last_seq, :seq)
         WHERE id = :id AND last_seq < :first`;
// A streaming task's batch only appends text: the short statement (binding twenty
// named parameters per task was a seventh of this thread's time under 1,000 streams).
const APPEND_ONLY =
  'UPDATE tasks SET output_text = output_text || ?, last_seq = MAX(last_seq, ?) WHERE id = ? AND last_seq < ?';

export function writeEvents(db: SqliteDb, writes: EventWrite[]): void {
  if (writes.length === 0) return;
  db.tx(() => {
    for (const { event } of writes) {
      insertEvent(db, event.task_id, event.seq, event.type, JSON.stringify(event.data), event.created_at);
    }
    const update = db.q(UPDATE);
    const appendOnly = db.q(APPEND_ONLY);
    for (const [id, m] of mergePatches(writes)) {
      if (onlyAppends(m)) {
        if (appendOnly.run(m.append, m.seq, id, m.first).changes === 0) throw fenced(id, m);
        continue;
      }
      const res = update.run({
        id,
        first: m.first,
        seq: m.seq,
        append: m.append,
        set_status: m.status !== undefined ? 1 : 0,
        status: m.status ?? null,
        set_progress: m.progress !== undefined ? 1 : 0,
        progress: m.progress ?? null,
        set_progress_message: m.progress_message !== undefined ? 1 : 0,
        progress_message: m.progress_message ?? null,
        set_result: m.result !== undefined ? 1 : 0,
        result: toJson(m.result),
        set_error: m.error !== undefined ? 1 : 0,
        error: toJson(m.error),
        set_cancel: m.cancel !== undefined ? 1 : 0,
        cancel_reason: m.cancel?.reason ?? null,
        cancel_requested_at: m.cancel?.requested_at ?? null,
        set_ended_at: m.ended_at !== undefined ? 1 : 0,
        ended_at: m.ended_at ?? null,
      });
      if (res.changes === 0) throw fenced(id, m);
    }
  });
}

/**
 * The fence: a batch whose events are not all above the stored log (its seqs skip a
 * gap recovery left, so no key collides) is from a node that lost the task.
 */
const fenced = (id: string, m: MergedPatch): LeashError =>
  new LeashError('event_conflict', `task ${id} has events past seq ${m.first - 1} already`, {
    details: { task_id: id, seq: m.first },
  });
