// Numbered, forward-only schema migrations (as graphile-worker does): each runs once,
// in its own transaction, and is recorded in `migrations`. Never edit a shipped
// migration; append a new one.

import type { DatabaseSync } from 'node:sqlite';
import { LeashError } from '../../core/errors.ts';

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

const INIT = /* sql */ `
-- num is the row id: AUTOINCREMENT keeps it monotonic (never reused, unchanged by
-- VACUUM), so it is the FIFO tie-break and the list cursor. id is the public key
-- (UNIQUE NOT NULL, target of foreign keys). Large JSON/text columns come last.
CREATE TABLE tasks (
  num                 INTEGER PRIMARY KEY AUTOINCREMENT,
  id                  TEXT NOT NULL UNIQUE,
  type                TEXT NOT NULL,
  owner               TEXT NOT NULL,
  status              TEXT NOT NULL
    CHECK (status IN ('queued', 'running', 'cancelling', 'completed', 'failed', 'cancelled')),
  priority            INTEGER NOT NULL DEFAULT 0,
  thread_id           TEXT,
  progress            REAL,
  progress_message    TEXT,
  created_at          TEXT NOT NULL,
  started_at          TEXT,
  ended_at            TEXT,
  deadline_at         TEXT,
  cancel_reason       TEXT,
  cancel_requested_at TEXT,
  idempotency_key     TEXT,
  input_hash          TEXT NOT NULL,
  last_seq            INTEGER NOT NULL DEFAULT 0,
  node_id             TEXT,
  lease_until         TEXT,
  attempt             INTEGER NOT NULL DEFAULT 0,
  error               TEXT,
  input               TEXT NOT NULL,
  result              TEXT,
  checkpoint          TEXT,
  output_text         TEXT NOT NULL DEFAULT ''
);

-- Hot indexes are partial and hold active rows only: they stay small and cache-resident,
-- and a task's life (queued → running → ended) touches few index pages. The store's
-- queries repeat each WHERE below verbatim so SQLite can prove a partial index usable.
CREATE INDEX tasks_queue ON tasks (priority DESC, num) WHERE status = 'queued';
CREATE INDEX tasks_running ON tasks (owner) WHERE status IN ('running', 'cancelling');
CREATE INDEX tasks_active ON tasks (owner, status) WHERE status IN ('queued', 'running', 'cancelling');
CREATE INDEX tasks_thread ON tasks (thread_id, status) WHERE thread_id IS NOT NULL;
-- Cold indexes, written once per task.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_owner_num ON tasks (owner, num);
CREATE INDEX tasks_ended ON tasks (status, ended_at) WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX tasks_cache ON tasks (owner, type, input_hash) WHERE status = 'completed';

-- Clustered by (task_id, seq): a replay reads one contiguous range.
CREATE TABLE task_events (
  task_id    TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  seq        INTEGER NOT NULL,
  type       TEXT NOT NULL,
  created_at TEXT NOT NULL,
  data       TEXT NOT NULL,
  PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;

CREATE TABLE threads (
  num        INTEGER PRIMARY KEY AUTOINCREMENT,
  id         TEXT NOT NULL UNIQUE,
  owner      TEXT NOT NULL,
  created_at TEXT NOT NULL,
  metadata   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX threads_owner_num ON threads (owner, num);

-- messages.task_id is deliberately not a foreign key: purging old tasks keeps the conversation.
CREATE TABLE messages (
  id         TEXT PRIMARY KEY NOT NULL,
  thread_id  TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
  seq        INTEGER NOT NULL,
  role       TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
  status     TEXT NOT NULL CHECK (status IN ('complete', 'streaming', 'cancelled', 'failed')),
  task_id    TEXT,
  created_at TEXT NOT NULL,
  usage      TEXT,
  content    TEXT NOT NULL,
  UNIQUE (thread_id, seq)
);
CREATE INDEX messages_task ON messages (thread_id, task_id) WHERE task_id IS NOT NULL;
`;

export const MIGRATIONS: readonly Migration[] = [
  { id: 1, name: 'init', sql: INIT },
  // Per-task run options (isolation, grace_ms) as JSON; NULL = the type's defaults.
  { id: 2, name: 'task run options', sql: 'ALTER TABLE tasks ADD COLUMN options TEXT;' },
  // The reaper finds queued tasks past their deadline by this index (a few rows, not the
  // whole queue); `cancel_detached` marks a task whose inline handler was left running.
  {
    id: 3,
    name: 'queued deadline index, cancel_detached',
    sql: `CREATE INDEX tasks_queued_deadline ON tasks (deadline_at) WHERE status = 'queued';
      ALTER TABLE tasks ADD COLUMN cancel_detached INTEGER NOT NULL DEFAULT 0;`,
  },
  // Task types remote workers declared, known again after a restart (docs/workers.md).
  {
    id: 4,
    name: 'remote-worker types',
    sql: 'CREATE TABLE remote_types (type TEXT PRIMARY KEY, input_schema TEXT, declared_at TEXT NOT NULL);',
  },
  // Remote types per owner: one owner's type name (and its schema) is not another's.
  // Rows stored before have no owner (''): known, nobody's until declared again.
  {
    id: 5,
    name: 'remote-worker types per owner',
    sql: `CREATE TABLE remote_types_by_owner (owner TEXT NOT NULL, type TEXT NOT NULL, input_schema TEXT,
        declared_at TEXT NOT NULL, PRIMARY KEY (owner, type));
      INSERT INTO remote_types_by_owner (owner, type, input_schema, declared_at)
        SELECT '', type, input_schema, declared_at FROM remote_types;
      DROP TABLE remote_types;
      ALTER TABLE remote_types_by_owner RENAME TO remote_types;`,
  },
];

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS migrations (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`;

/**
 * Applies every migration not yet recorded, in id order, each in its own
 * BEGIN IMMEDIATE transaction (so two processes starting at once cannot both apply
 * one). Returns the ids applied; an up-to-date database yields [].
 */
export function migrate(db: DatabaseSync, migrations: readonly Migration[] = MIGRATIONS): number[] {
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.id <= migrations[i - 1]!.id) {
      throw new LeashError(
        'migration_error',
        `migration ids must increase (${migrations[i]!.id} after ${migrations[i - 1]!.id})`,
      );
    }
  }
  db.exec(CREATE_TABLE);

  const known = migrations.at(-1)?.id ?? 0;
  const latest = (db.prepare('SELECT MAX(id) AS id FROM migrations').get() as { id: number | null }).id ?? 0;
  if (latest > known) {
    throw new LeashError(
      'migration_error',
      `the database schema (migration ${latest}) is newer than this version of leash knows (${known}); upgrade leash`,
    );
  }

  const done = new Set((db.prepare('SELECT id FROM migrations').all() as Array<{ id: number }>).map((r) => r.id));
  const isApplied = db.prepare('SELECT 1 AS x FROM migrations WHERE id = ?');
  const record = db.prepare(
    `INSERT INTO migrations (id, name, applied_at) VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))`,
  );
  const applied: number[] = [];
  for (const m of migrations) {
    if (done.has(m.id)) continue;
    db.exec('BEGIN IMMEDIATE');
    try {
      // Re-checked under the write lock: another process may have just applied it.
      if (isApplied.get(m.id) === undefined) {
        db.exec(m.sql);
        record.run(m.id, m.name);
        applied.push(m.id);
      }
      db.exec('COMMIT');
    } catch (cause) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw new LeashError('migration_error', `migration ${m.id} (${m.name}) failed: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
  return applied;
}
