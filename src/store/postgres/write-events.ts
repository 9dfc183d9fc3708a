// writeEvents on PostgreSQL: the whole batch (events of many tasks, and each task's
// row patches folded into one by ../patches.ts) is a single statement, so it is atomic and costs one
// round trip. A seq already taken (another node took the task over) or a task that
// is gone fails the statement; the caller then learns which task, to drop its events.
// So does a batch not above the task's stored last_seq (leash_fenced): recovery after a
// lost node writes past a gap, where no key would collide.
// No NOTIFY in here: a transaction that notifies holds PostgreSQL's one notify-queue
// lock through its commit (WAL flush included), so every writer would queue behind it;
// the event log announces a batch after its commit, through the notifier.

import type pg from 'pg';
import { LeashError } from '../../core/errors.ts';
import { mergePatches, type MergedPatch } from '../patches.ts';
import type { EventWrite } from '../store.ts';
import { unavailable, type PgDb } from './db.ts';
import { pgText } from './rows.ts';

// The patch columns ($6 …), in order: name, type, and the value for a task's merged
// patch. `null` is a value only where its set_ flag says so (`result: null` is stored as NULL).
const PATCH_COLUMNS: Array<[name: string, type: string, value: (id: string, m: MergedPatch) => unknown]> = [
  ['id', 'text', (id) => id],
  ['seq', 'int', (_, m) => m.seq],
  ['append', 'text', (_, m) => pgText(m.append)],
  ['set_status', 'bool', (_, m) => m.status !== undefined],
  ['status', 'text', (_, m) => m.status ?? null],
  ['set_progress', 'bool', (_, m) => m.progress !== undefined],
  ['progress', 'float8', (_, m) => m.progress ?? null],
  ['set_progress_message', 'bool', (_, m) => m.progress_message !== undefined],
  ['progress_message', 'text', (_, m) => (m.progress_message == null ? null : pgText(m.progress_message))],
  ['set_result', 'bool', (_, m) => m.result !== undefined],
  ['result', 'json', (_, m) => (m.result == null ? null : JSON.stringify(m.result))],
  ['set_error', 'bool', (_, m) => m.error !== undefined],
  ['error', 'json', (_, m) => (m.error == null ? null : JSON.stringify(m.error))],
  ['set_cancel', 'bool', (_, m) => m.cancel !== undefined],
  ['cancel_reason', 'text', (_, m) => m.cancel?.reason ?? null],
  ['cancel_requested_at', 'timestamptz', (_, m) => m.cancel?.requested_at ?? null],
  ['set_ended_at', 'bool', (_, m) => m.ended_at !== undefined],
  ['ended_at', 'timestamptz', (_, m) => m.ended_at ?? null],
  ['first', 'int', (_, m) => m.first],
];
const param = (i: number): string => `$${6 + i}`;

/**
 * The statement for a batch whose patches are `patches` (p: one row per task, named as
 * in PATCH_COLUMNS). Parameters are column arrays (unnest), not one JSON document:
 * json_to_recordset would refuse a \u0000 inside a value, and json[] elements are stored
 * exactly as sent.
 */
const statement = (patches: string, fenced: string): string => `WITH ev AS (
    INSERT INTO task_events (task_id, seq, type, created_at, data)
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::json[])
  )
  , up AS (
  UPDATE tasks t SET
    status = CASE WHEN p.set_status THEN p.status ELSE t.status END,
    progress = CASE WHEN p.set_progress THEN p.progress ELSE t.progress END,
    progress_message = CASE WHEN p.set_progress_message THEN p.progress_message ELSE t.progress_message END,
    output_text = t.output_text || p.append,
    result = CASE WHEN p.set_result THEN p.result ELSE t.result END,
    error = CASE WHEN p.set_error THEN p.error ELSE t.error END,
    cancel_reason = CASE WHEN p.set_cancel THEN p.cancel_reason ELSE t.cancel_reason END,
    cancel_requested_at = CASE WHEN p.set_cancel THEN p.cancel_requested_at ELSE t.cancel_requested_at END,
    ended_at = CASE WHEN p.set_ended_at THEN p.ended_at ELSE t.ended_at END,
    last_seq = GREATEST(t.last_seq, p.seq)
  FROM ${patches}
  WHERE t.id = p.id AND t.last_seq < p.first
  RETURNING t.id
  )
  ${fenced}`;

/** A batch of several tasks' events: the patches are a table of column arrays. */
const WRITE = statement(
  `unnest(${PATCH_COLUMNS.map(([, type], i) => `${param(i)}::${type}[]`).join(', ')})
    AS p(${PATCH_COLUMNS.map(([name]) => name).join(', ')})`,
  `SELECT leash_fenced(p.id) FROM unnest($6::text[]) AS p(id) WHERE NOT EXISTS (SELECT 1 FROM up WHERE up.id = p.id)`,
);
/**
 * A batch of one task's events (a task's end, at low concurrency nearly every batch):
 * the patch is one row of scalars. The planner's work on the nineteen arrays was most
 * of the general statement's cost: handler running → stored completed in bench/pg at
 * concurrency 1 went from 1.65 to 0.86–0.95 ms.
 */
const WRITE_ONE = statement(
  `(SELECT ${PATCH_COLUMNS.map(([name, type], i) => `${param(i)}::${type} AS ${name}`).join(', ')}) AS p`,
  `SELECT leash_fenced($6) WHERE NOT EXISTS (SELECT 1 FROM up)`,
);

export async function writeEvents(db: PgDb, writes: EventWrite[]): Promise<void> {
  if (writes.length === 0) return;
  const pool = db.live();
  const patches = [...mergePatches(writes)];
  const one = patches.length === 1 ? patches[0]! : null;
  const values: unknown[] = [
    writes.map((w) => w.event.task_id),
    writes.map((w) => w.event.seq),
    writes.map((w) => w.event.type),
    writes.map((w) => w.event.created_at),
    writes.map((w) => JSON.stringify(w.event.data) ?? 'null'),
    ...PATCH_COLUMNS.map(([, , col]) => (one ? col(one[0], one[1]) : patches.map(([id, m]) => col(id, m)))),
  ];
  try {
    // Not a named statement: a generic plan cached while `tasks` was small joins it by a
    // sequential scan, kept as the history grows (until autovacuum next analyzes it; a
    // new database runs a minute or more that way). Planned per batch, the join is by
    // the id index once the table is big. Measured: 1,536 → 1,893–2,312 tasks/s on
    // bench/pg at 16 in flight and 12,000 tasks.
    await pool.query({ text: one ? WRITE_ONE : WRITE, values });
  } catch (e) {
    throw unavailable(await explain(pool, e, writes));
  }
}

/** A constraint failure as the LeashError the runtime acts on, naming the task. */
async function explain(db: pg.Pool, e: unknown, writes: EventWrite[]): Promise<unknown> {
  const code = (e as { code?: string }).code;
  if (code === '23505') {
    // Which (task, seq) was taken: one already stored, or a duplicate within the batch.
    const taken = await db
      .query<{ task_id: string; seq: number }>(
        `SELECT task_id, seq FROM task_events
         WHERE (task_id, seq) IN (SELECT * FROM unnest($1::text[], $2::int[])) ORDER BY task_id, seq LIMIT 1`,
        [writes.map((w) => w.event.task_id), writes.map((w) => w.event.seq)],
      )
      .then((r) => r.rows[0])
      .catch(() => undefined);
    let hit = taken;
    if (hit === undefined) {
      const seen = new Set<string>();
      for (const { event } of writes) {
        const k = `${event.seq}:${event.task_id}`;
        if (seen.has(k)) {
          hit = { task_id: event.task_id, seq: event.seq };
          break;
        }
        seen.add(k);
      }
    }
    const details = hit ?? { task_id: writes[0]!.event.task_id, seq: writes[0]!.event.seq };
    return new LeashError('event_conflict', `task ${details.task_id} already has an event with seq ${details.seq}`, {
      details,
      cause: e,
    });
  }
  if (code === '23503') {
    const ids = [...new Set(writes.map((w) => w.event.task_id))];
    const present = await db
      .query<{ id: string }>('SELECT id FROM tasks WHERE id = ANY($1::text[])', [ids])
      .then((r) => new Set(r.rows.map((x) => x.id)))
      .catch(() => new Set<string>());
    const missing = ids.find((id) => !present.has(id)) ?? ids[0]!;
    return new LeashError('not_found', `task ${missing} does not exist`, { details: { task_id: missing }, cause: e });
  }
  if (code === FENCED) {
    // A batch whose seqs are not above the stored log skipped a gap recovery left: the
    // task was recovered (another node, after this one's lease ran out).
    const id = (e as { detail?: string }).detail ?? writes[0]!.event.task_id;
    const exists = await db
      .query('SELECT 1 FROM tasks WHERE id = $1', [id])
      .then((r) => (r.rowCount ?? 0) > 0)
      .catch(() => true);
    if (!exists)
      return new LeashError('not_found', `task ${id} does not exist`, { details: { task_id: id }, cause: e });
    const first = writes.find((w) => w.event.task_id === id)?.event.seq;
    return new LeashError('event_conflict', `task ${id} has events past seq ${(first ?? 1) - 1} already`, {
      details: { task_id: id, seq: first },
      cause: e,
    });
  }
  return e;
}

/** SQLSTATE of leash_fenced() (migration 7). */
const FENCED = 'LS409';
