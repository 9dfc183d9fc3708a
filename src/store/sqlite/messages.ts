// A thread's messages on SQLite: appended with the next per-thread seq, updated while
// a reply streams, read whole or a page at a time, deleted on a rollback.

import { LeashError } from '../../core/errors.ts';
import type { Message, MessagePatch, NewMessage } from '../store.ts';
import { rowLimit } from '../paging.ts';
import { errcodeOf, SQLITE_CONSTRAINT_FOREIGNKEY, type SqliteDb } from './db.ts';
import { toJson, toMessage, type MessageRow } from './rows.ts';

const APPEND = `INSERT INTO messages (id, thread_id, seq, role, content, status, task_id, created_at, usage)
         VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE thread_id = ?2), ?3, ?4, ?5, ?6, ?7, NULL)
         RETURNING *`;
const UPDATE = `UPDATE messages SET
         content = (CASE WHEN :set_content THEN :content ELSE content END) || :append,
         status = CASE WHEN :set_status THEN :status ELSE status END,
         usage = CASE WHEN :set_usage THEN :usage ELSE usage END
       WHERE id = :id`;

export function appendMessage(db: SqliteDb, m: NewMessage): Message {
  try {
    // seq is computed inside the INSERT itself, so it is atomic without a transaction.
    const row = db
      .q(APPEND)
      .get(m.id, m.thread_id, m.role, m.content, m.status, m.task_id, m.created_at) as unknown as MessageRow;
    return toMessage(row);
  } catch (e) {
    if (errcodeOf(e) === SQLITE_CONSTRAINT_FOREIGNKEY) {
      throw new LeashError('not_found', `thread ${m.thread_id} does not exist`, { cause: e });
    }
    throw e;
  }
}

export function updateMessage(db: SqliteDb, id: string, patch: MessagePatch): void {
  // An unknown id is a no-op: a rollback may delete a turn while its stream still writes.
  db.q(UPDATE).run({
    id,
    set_content: patch.content !== undefined ? 1 : 0,
    content: patch.content ?? null,
    append: patch.append ?? '',
    set_status: patch.status !== undefined ? 1 : 0,
    status: patch.status ?? null,
    set_usage: patch.usage !== undefined ? 1 : 0,
    usage: toJson(patch.usage),
  });
}

export function listMessages(db: SqliteDb, threadId: string): Message[] {
  const rows = db.q('SELECT * FROM messages WHERE thread_id = ? ORDER BY seq').all(threadId) as unknown as MessageRow[];
  return rows.map(toMessage);
}

export function listRecentMessages(
  db: SqliteDb,
  threadId: string,
  limit: number,
  beforeSeq = Number.MAX_SAFE_INTEGER,
): Message[] {
  const rows = db
    .q('SELECT * FROM messages WHERE thread_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?')
    .all(threadId, beforeSeq, rowLimit(limit)) as unknown as MessageRow[];
  return rows.reverse().map(toMessage);
}

export function countMessagesBefore(db: SqliteDb, threadId: string, beforeSeq: number): number {
  const row = db.q('SELECT COUNT(*) AS n FROM messages WHERE thread_id = ? AND seq < ?').get(threadId, beforeSeq) as {
    n: number;
  };
  return Number(row.n);
}

export function deleteMessagesOfTask(db: SqliteDb, threadId: string, taskId: string): number {
  return Number(db.q('DELETE FROM messages WHERE thread_id = ? AND task_id = ?').run(threadId, taskId).changes);
}
