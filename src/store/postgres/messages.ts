// A thread's messages on PostgreSQL: appended with the next per-thread seq, updated
// while a reply streams, read whole or a page at a time, deleted on a rollback.

import { LeashError } from '../../core/errors.ts';
import type { Message, MessagePatch, NewMessage } from '../store.ts';
import { rowLimit } from '../paging.ts';
import type { PgDb } from './db.ts';
import { pgText, toJson, toMessage, type PgMessageRow } from './rows.ts';

const APPEND = `INSERT INTO messages (id, thread_id, seq, role, content, status, task_id, created_at, usage)
             VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE thread_id = $2), $3, $4, $5, $6, $7, NULL)
             RETURNING *`;
const UPDATE = `UPDATE messages SET
         content = (CASE WHEN $2 THEN $3 ELSE content END) || $4,
         status = CASE WHEN $5 THEN $6 ELSE status END,
         usage = CASE WHEN $7 THEN $8::json ELSE usage END
       WHERE id = $1`;
const RECENT = 'SELECT * FROM messages WHERE thread_id = $1 AND seq < $2::bigint ORDER BY seq DESC LIMIT $3';
const COUNT_BEFORE = 'SELECT COUNT(*) AS n FROM messages WHERE thread_id = $1 AND seq < $2::bigint';

export async function appendMessage(db: PgDb, m: NewMessage): Promise<Message> {
  // seq is computed inside the INSERT; two appends racing on one thread can compute
  // the same one, and the loser (unique violation) simply computes it again.
  const values = [m.id, m.thread_id, m.role, pgText(m.content), m.status, m.task_id, m.created_at];
  for (let attempt = 0; ; attempt++) {
    try {
      return toMessage((await db.q<PgMessageRow>(APPEND, values, 'leash_append_message')).rows[0]!);
    } catch (e) {
      const err = e as { code?: string; constraint?: string };
      if (err.code === '23503') throw new LeashError('not_found', `thread ${m.thread_id} does not exist`, { cause: e });
      if (err.code === '23505' && err.constraint === 'messages_thread_id_seq_key' && attempt < 20) continue;
      throw e;
    }
  }
}

export async function updateMessage(db: PgDb, id: string, patch: MessagePatch): Promise<void> {
  // An unknown id is a no-op: a rollback may delete a turn while its stream still writes.
  const values = [
    id,
    patch.content !== undefined,
    patch.content === undefined ? null : pgText(patch.content),
    pgText(patch.append ?? ''),
    patch.status !== undefined,
    patch.status ?? null,
    patch.usage !== undefined,
    toJson(patch.usage),
  ];
  await db.q(UPDATE, values, 'leash_update_message');
}

export async function listMessages(db: PgDb, threadId: string): Promise<Message[]> {
  const sql = 'SELECT * FROM messages WHERE thread_id = $1 ORDER BY seq';
  return (await db.q<PgMessageRow>(sql, [threadId], 'leash_messages')).rows.map(toMessage);
}

export async function listRecentMessages(
  db: PgDb,
  threadId: string,
  limit: number,
  beforeSeq = Number.MAX_SAFE_INTEGER,
): Promise<Message[]> {
  const values = [threadId, beforeSeq, rowLimit(limit)];
  const rows = (await db.q<PgMessageRow>(RECENT, values, 'leash_recent_messages')).rows;
  return rows.reverse().map(toMessage);
}

export async function countMessagesBefore(db: PgDb, threadId: string, beforeSeq: number): Promise<number> {
  const r = await db.q<{ n: string }>(COUNT_BEFORE, [threadId, beforeSeq], 'leash_count_messages');
  return Number(r.rows[0]!.n);
}

export async function deleteMessagesOfTask(db: PgDb, threadId: string, taskId: string): Promise<number> {
  const sql = 'DELETE FROM messages WHERE thread_id = $1 AND task_id = $2';
  return (await db.q(sql, [threadId, taskId])).rowCount ?? 0;
}
