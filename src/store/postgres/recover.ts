// recoverLost on PostgreSQL: the running and cancelling tasks of a lost node end (or go
// back to the queue) in one transaction, one statement per outcome, each event written
// above every seq the lost node may have handed out (see SEQ_AHEAD).

import type { Task, TaskStatus } from '../../core/types.ts';
import { checkRecoverOptions, lostOutcome, nodeLostMessage } from '../lease.ts';
import { SEQ_AHEAD, type RecoverLostOptions } from '../store.ts';
import type { PgDb } from './db.ts';
import { toTask, type PgTaskRow } from './rows.ts';

// Recovery writes above every seq the lost node may have handed out (SEQ_AHEAD past its
// last commit); `last_seq` on the right of a SET is the row's old value: the last durable seq.
const RECOVERED_SEQ = `last_seq = last_seq + ${SEQ_AHEAD} + 1`;
const DURABLE_SEQ = `up.last_seq - ${SEQ_AHEAD} - 1`;
// The row's output_text may lag its events (the runtime saves it about once a second
// while text streams: runtime/active-run.ts OUTPUT_SAVE_MS): rebuilt from the stored deltas.
const REBUILT_TEXT = `output_text = (SELECT coalesce(string_agg(e.data->>'text', '' ORDER BY e.seq), '')
                   FROM task_events e WHERE e.task_id = tasks.id AND e.type = 'output.delta')`;

// SKIP LOCKED: a row some transaction holds (its node writing, another node
// recovering it) is not ours to judge now; the next pass sees it again.
const LOST = `SELECT id, type, status FROM tasks
                 WHERE status IN ('running', 'cancelling')
                   AND (($1::text IS NOT NULL AND node_id = $1) OR ($2::timestamptz IS NOT NULL AND lease_until < $2))
                 ORDER BY num FOR UPDATE SKIP LOCKED`;

/** One statement per outcome: $1 the task ids, $2 now (and $3 the node_lost message template). */
const END: Record<'cancelled' | 'requeued' | 'failed', string> = {
  cancelled: `WITH up AS (
                 UPDATE tasks SET status = 'cancelled', ended_at = $2, lease_until = NULL, ${REBUILT_TEXT},
                   cancel_reason = COALESCE(cancel_reason, 'shutdown'),
                   cancel_requested_at = COALESCE(cancel_requested_at, $2), ${RECOVERED_SEQ}
                 WHERE id = ANY($1::text[]) RETURNING *
               ), ev AS (
                 INSERT INTO task_events (task_id, seq, type, created_at, data)
                 SELECT id, last_seq, 'task.cancelled', $2,
                   json_build_object('reason', cancel_reason, 'output_text', output_text,
                     'last_durable_seq', ${DURABLE_SEQ}) FROM up
               )
               SELECT * FROM up`,
  requeued: `WITH up AS (
                 UPDATE tasks SET status = 'queued', node_id = NULL, lease_until = NULL, ${REBUILT_TEXT},
                   ${RECOVERED_SEQ}
                 WHERE id = ANY($1::text[]) RETURNING *
               ), ev AS (
                 INSERT INTO task_events (task_id, seq, type, created_at, data)
                 SELECT id, last_seq, 'task.queued', $2, json_build_object('last_durable_seq', ${DURABLE_SEQ}) FROM up
               )
               SELECT * FROM up`,
  failed: `WITH up AS (
                 UPDATE tasks SET status = 'failed', ended_at = $2, lease_until = NULL, ${REBUILT_TEXT},
                   error = json_build_object('code', 'node_lost', 'message', replace($3, '{seq}', last_seq::text)),
                   ${RECOVERED_SEQ}
                 WHERE id = ANY($1::text[]) RETURNING *
               ), ev AS (
                 INSERT INTO task_events (task_id, seq, type, created_at, data)
                 SELECT id, last_seq, 'task.failed', $2,
                   json_build_object('error', error, 'last_durable_seq', ${DURABLE_SEQ}) FROM up
               )
               SELECT * FROM up`,
};

export async function recoverLost(db: PgDb, opts: RecoverLostOptions): Promise<Task[]> {
  checkRecoverOptions(opts);
  return db.tx(async (c) => {
    const lost = (
      await c.query<{ id: string; type: string; status: TaskStatus }>({
        name: 'leash_lost',
        text: LOST,
        values: [opts.nodeId ?? null, opts.expiredBefore ?? null],
      })
    ).rows;
    if (lost.length === 0) return [];
    const resumable = new Set(opts.resumableTypes);
    const ids = { cancelled: [] as string[], requeued: [] as string[], failed: [] as string[] };
    for (const t of lost) ids[lostOutcome(t, resumable)].push(t.id);
    const rows: PgTaskRow[] = [];
    for (const outcome of ['cancelled', 'requeued', 'failed'] as const) {
      if (ids[outcome].length === 0) continue;
      const values = outcome === 'failed' ? [ids.failed, opts.now, nodeLostMessage('{seq}')] : [ids[outcome], opts.now];
      rows.push(...(await c.query<PgTaskRow>(END[outcome], values)).rows);
    }
    return rows.sort((a, b) => Number(a.num) - Number(b.num)).map(toTask);
  });
}
