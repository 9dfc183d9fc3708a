// The SQLite connection every operation of the store runs on: one DatabaseSync, its
// statements prepared once per SQL text, and transactions. Every operation is
// synchronous, so within this process no two interleave; BEGIN IMMEDIATE takes the
// write lock up front so other processes on the same file wait (busy_timeout) instead
// of failing mid-transaction.

import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { LeashError } from '../../core/errors.ts';
import { migrate } from './migrations.ts';

// SQLite extended result codes the store turns into LeashErrors.
export const SQLITE_CONSTRAINT_FOREIGNKEY = 787;
export const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
export const SQLITE_CONSTRAINT_UNIQUE = 2067;
export const errcodeOf = (e: unknown): number | undefined => (e as { errcode?: number } | null)?.errcode;

// The WHERE clauses of the partial indexes of migration 1, verbatim: a query must contain
// one of these terms for SQLite to use the index (tested by the query-plan test).
export const ACTIVE = `status IN ('queued', 'running', 'cancelling')`;
export const TERMINAL = `status IN ('completed', 'failed', 'cancelled')`;

export class SqliteDb {
  #db: DatabaseSync;
  #closed = false;
  readonly #stmts = new Map<string, StatementSync>();

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Opens (creating if needed) the database file; `:memory:` for a private in-memory one. */
  static open(path: string): SqliteDb {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
    } catch (cause) {
      throw new LeashError('store_unavailable', `cannot open SQLite database ${path}: ${(cause as Error).message}`, {
        cause,
      });
    }
    try {
      // WAL: readers never block the writer; NORMAL: no fsync per commit (WAL stays consistent).
      db.exec('PRAGMA journal_mode = WAL');
      db.exec('PRAGMA synchronous = NORMAL');
      db.exec('PRAGMA busy_timeout = 5000');
      db.exec('PRAGMA foreign_keys = ON');
      // 8 MiB of page cache (default 2 MiB): a thousand streaming tasks keep their rows and
      // the last page of each one's events hot; with 2 MiB re-reading evicted pages from
      // the OS took a fifth of the database thread at 20,000 deltas/s. 64 MiB was no
      // better there, and it is memory the process keeps: the soak counted it as growth.
      db.exec('PRAGMA cache_size = -8192');
      // Checkpoint every 10,000 WAL pages (≈40 MB) rather than SQLite's 1,000: streaming
      // tasks rewrite the same pages batch after batch, and a checkpoint copies each
      // page once however often it changed since the last. With 1,000 a checkpoint ran
      // nearly every batch under 500 streams (bench/sqlite-events.ts: the thread's CPU
      // per event); the price is a WAL file of up to ≈40 MB beside the database.
      db.exec('PRAGMA wal_autocheckpoint = 10000');
    } catch (cause) {
      db.close();
      throw new LeashError(
        'store_unavailable',
        `cannot configure SQLite database ${path}: ${(cause as Error).message}`,
        {
          cause,
        },
      );
    }
    return new SqliteDb(db);
  }

  #live(): DatabaseSync {
    if (this.#closed) throw new LeashError('store_closed', 'the SQLite store is closed');
    return this.#db;
  }

  /** Prepared once per SQL text and reused (prepared lazily: tables exist only after migrate). */
  q(sql: string): StatementSync {
    let s = this.#stmts.get(sql);
    if (s === undefined) {
      s = this.#live().prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  tx<T>(fn: () => T): T {
    const db = this.#live();
    this.q('BEGIN IMMEDIATE').run();
    try {
      const out = fn();
      this.q('COMMIT').run();
      return out;
    } catch (e) {
      if (db.isTransaction) this.q('ROLLBACK').run();
      throw e;
    }
  }

  migrate(): void {
    migrate(this.#live());
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stmts.clear();
    try {
      // Refreshes planner statistics where they are stale (cheap: SQLite bounds the work).
      this.#db.exec('PRAGMA optimize');
    } catch {
      // Best effort only; closing matters more.
    }
    this.#db.close();
  }

  /** The query plan of every statement prepared so far (see SqliteStore.explainStatements). */
  explainStatements(): Array<{ sql: string; plan: string[] }> {
    const db = this.#live();
    const out: Array<{ sql: string; plan: string[] }> = [];
    for (const sql of this.#stmts.keys()) {
      if (/^(BEGIN|COMMIT|ROLLBACK)\b/.test(sql)) continue;
      const rows = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>;
      out.push({ sql, plan: rows.map((r) => r.detail) });
    }
    return out;
  }
}
