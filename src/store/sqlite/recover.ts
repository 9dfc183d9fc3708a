// recoverLost on SQLite: the running and cancelling tasks of a lost node end (or go
// back to the queue) in one write transaction, each with its event written above
// every seq the lost node may have handed out (see SEQ_AHEAD).

import type { Task, TaskStatus } from '../../core/types.ts';
import { checkRecoverOptions, lostOutcome, nodeLost } from '../lease.ts';
import { SEQ_AHEAD, type RecoverLostOptions } from '../store.ts';
import type { SqliteDb } from './db.ts';
import { insertEvent } from './insert-event.ts';
import { toTask, type TaskRow } from './rows.ts';

const LOST = `SELECT id, type, status, last_seq FROM tasks INDEXED BY tasks_running
         WHERE status IN ('running', 'cancelling')
           AND ((?1 IS NOT NULL AND node_id = ?1) OR (?2 IS NOT NULL AND lease_until < ?2))
         ORDER BY num`;
// The row's output_text may lag its events (the runtime saves it about once a second
// while text streams: runtime/active-run.ts OUTPUT_SAVE_MS): rebuilt from the stored deltas.
const REBUILT_TEXT = `output_text = (SELECT coalesce(group_concat(json_extract(data, '$.text'), '' ORDER BY seq), '')
                 FROM task_events WHERE task_id = tasks.id AND type = 'output.delta')`;
const CANCEL = `UPDATE tasks SET status = 'cancelled', ended_at = ?1, lease_until = NULL, ${REBUILT_TEXT},
               cancel_reason = COALESCE(cancel_reason, 'shutdown'), cancel_requested_at = COALESCE(cancel_requested_at, ?1),
               last_seq = ?3
             WHERE id = ?2 RETURNING *`;
const REQUEUE = `UPDATE tasks SET status = 'queued', node_id = NULL, lease_until = NULL, ${REBUILT_TEXT}, last_seq = ?
             WHERE id = ? RETURNING *`;
const FAIL = `UPDATE tasks SET status = 'failed', error = ?1, ended_at = ?2, lease_until = NULL, ${REBUILT_TEXT},
             last_seq = ?4
             WHERE id = ?3 RETURNING *`;

export function recoverLost(db: SqliteDb, opts: RecoverLostOptions): Task[] {
  checkRecoverOptions(opts);
  const resumable = new Set(opts.resumableTypes);
  return db.tx(() => {
    const lost = db.q(LOST).all(opts.nodeId ?? null, opts.expiredBefore ?? null) as Array<{
      id: string;
      type: string;
      status: TaskStatus;
      last_seq: number;
    }>;
    const out: Task[] = [];
    for (const t of lost) {
      let row: TaskRow | undefined;
      // Above every seq the lost node may have handed out (SEQ_AHEAD past its last commit).
      const next = t.last_seq + SEQ_AHEAD + 1;
      const durable = t.last_seq;
      switch (lostOutcome(t, resumable)) {
        case 'cancelled': {
          row = db.q(CANCEL).get(opts.now, t.id, next) as TaskRow | undefined;
          if (row) {
            const data = { reason: row.cancel_reason, output_text: row.output_text, last_durable_seq: durable };
            insertEvent(db, t.id, row.last_seq, 'task.cancelled', JSON.stringify(data), opts.now);
          }
          break;
        }
        case 'requeued': {
          row = db.q(REQUEUE).get(next, t.id) as TaskRow | undefined;
          const data = { last_durable_seq: durable };
          if (row) insertEvent(db, t.id, row.last_seq, 'task.queued', JSON.stringify(data), opts.now);
          break;
        }
        case 'failed': {
          row = db.q(FAIL).get(JSON.stringify(nodeLost(durable)), opts.now, t.id, next) as TaskRow | undefined;
          const data = { error: nodeLost(durable), last_durable_seq: durable };
          if (row) insertEvent(db, t.id, row.last_seq, 'task.failed', JSON.stringify(data), opts.now);
          break;
        }
      }
      if (row) out.push(toTask(row));
    }
    return out;
  });
}
