// The embedded default Store: one SQLite file through node:sqlite (DatabaseSync).
// Every method runs synchronously inside its promise, so within this process no two
// store operations interleave; BEGIN IMMEDIATE takes the write lock up front so other
// processes on the same file wait (busy_timeout) instead of failing mid-transaction.

import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { LeashError } from '../../core/errors.ts';
import { TASK_STATUSES, TERMINAL_STATUSES } from '../../core/types.ts';
import type {
  BatchCancelFilter,
  CancelReason,
  ListTasksFilter,
  Page,
  Task,
  TaskEvent,
  TaskStatus,
} from '../../core/types.ts';
import type {
  ClaimOptions,
  CreateTaskOptions,
  CreateTaskResult,
  EventWrite,
  LeaseRenewal,
  Message,
  MessageStatus,
  NewMessage,
  NewTask,
  Notifier,
  Store,
  TaskPatch,
  Thread,
  ClaimedTask,
  TaskRunOptions,
} from '../store.ts';
import { SEQ_AHEAD } from '../store.ts';
import { addMs, leaseRenewalOf, nodeLost } from '../lease.ts';
import { migrate } from './migrations.ts';
import { LocalNotifier } from './notifier.ts';
import { clampLimit, pageOf, pageStart } from '../paging.ts';
import {
  fromJson,
  toEvent,
  toJson,
  toMessage,
  toTask,
  toThread,
  type EventRow,
  type MessageRow,
  type TaskRow,
  type ThreadRow,
} from './rows.ts';

const NON_TERMINAL: TaskStatus[] = TASK_STATUSES.filter((s) => !TERMINAL_STATUSES.has(s));

// SQLite extended result codes this store turns into LeashErrors.
const SQLITE_CONSTRAINT_FOREIGNKEY = 787;
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
const SQLITE_CONSTRAINT_UNIQUE = 2067;
const errcodeOf = (e: unknown): number | undefined => (e as { errcode?: number } | null)?.errcode;

// The WHERE clauses of the partial indexes of migration 1, verbatim: a query must contain
// one of these terms for SQLite to use the index (tested by the query-plan test).
const ACTIVE = `status IN ('queued', 'running', 'cancelling')`;
const TERMINAL = `status IN ('completed', 'failed', 'cancelled')`;

const THREAD_COLUMNS = `th.num, th.id, th.owner, th.created_at, th.metadata,
  EXISTS (SELECT 1 FROM tasks t WHERE t.thread_id = th.id AND t.status IN ('queued', 'running', 'cancelling')) AS busy`;

/** A task's patches within one writeEvents batch, folded into one row update. */
interface MergedPatch {
  /** The batch's first seq of the task: it must be above the row's last_seq (the fence). */
  first: number;
  seq: number;
  append: string;
  status?: TaskStatus;
  progress?: number | null;
  progress_message?: string | null;
  result?: unknown;
  error?: unknown;
  cancel?: { reason: CancelReason; requested_at: string } | null;
  ended_at?: string | null;
}

export interface SqliteStoreOptions {
  /** Defaults to an in-process LocalNotifier. */
  notifier?: Notifier;
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly notifier: Notifier;
  readonly path: string;
  #db: DatabaseSync;
  #closed = false;
  readonly #stmts = new Map<string, StatementSync>();

  private constructor(db: DatabaseSync, path: string, notifier: Notifier) {
    this.#db = db;
    this.path = path;
    this.notifier = notifier;
  }

  /** Opens (creating if needed) the database file; `:memory:` for a private in-memory one. Call `migrate()` next. */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteStore {
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
    return new SqliteStore(db, path, options.notifier ?? new LocalNotifier());
  }

  // ── plumbing ─────────────────────────────────────────────────────────────

  #live(): DatabaseSync {
    if (this.#closed) throw new LeashError('store_closed', 'the SQLite store is closed');
    return this.#db;
  }

  /** Prepared once per SQL text and reused (prepared lazily: tables exist only after migrate). */
  #q(sql: string): StatementSync {
    let s = this.#stmts.get(sql);
    if (s === undefined) {
      s = this.#live().prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  #tx<T>(fn: () => T): T {
    const db = this.#live();
    this.#q('BEGIN IMMEDIATE').run();
    try {
      const out = fn();
      this.#q('COMMIT').run();
      return out;
    } catch (e) {
      if (db.isTransaction) this.#q('ROLLBACK').run();
      throw e;
    }
  }

  async migrate(): Promise<void> {
    migrate(this.#live());
  }

  async close(): Promise<void> {
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

  async ping(): Promise<void> {
    this.#q('SELECT 1').get();
  }

  /**
   * The query plan of every statement this store has prepared so far (diagnostics, and
   * the test that keeps hot statements on their indexes).
   */
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

  // ── tasks ────────────────────────────────────────────────────────────────

  async createTask(t: NewTask, opts: CreateTaskOptions): Promise<CreateTaskResult> {
    return this.#tx((): CreateTaskResult => {
      if (t.idempotency_key !== null) {
        const prior = this.#q('SELECT * FROM tasks WHERE owner = ? AND idempotency_key = ?').get(
          t.owner,
          t.idempotency_key,
        ) as TaskRow | undefined;
        if (prior) return { kind: 'existing', task: toTask(prior) };
      }
      // Bounded by the limit itself (creates stop there), and served by the small active index.
      const queued = (
        this.#q(`SELECT COUNT(*) AS n FROM tasks WHERE owner = ? AND status = 'queued' AND ${ACTIVE}`).get(t.owner) as {
          n: number;
        }
      ).n;
      if (queued >= opts.maxQueuedPerOwner) return { kind: 'queue_full', queued };
      // Eager start: exactly when a claim would take this task next (one writer at a
      // time, so the counts below are exact).
      const on = opts.startOn;
      const start =
        on !== undefined &&
        t.thread_id === null &&
        on.maxRunningPerOwner > 0 &&
        this.#q(`SELECT 1 FROM tasks WHERE status = 'queued' AND priority >= ? LIMIT 1`).get(t.priority) ===
          undefined &&
        // ACTIVE steers SQLite to the small active index (else it walks the owner's history).
        (
          this.#q(
            `SELECT COUNT(*) AS n FROM tasks WHERE owner = ? AND status IN ('running', 'cancelling') AND ${ACTIVE}`,
          ).get(t.owner) as { n: number }
        ).n < on.maxRunningPerOwner;
      const row = this.#q(
        `INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at,
           idempotency_key, input_hash, input, options, last_seq, started_at, node_id, lease_until, attempt)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      ).get(
        t.id,
        t.type,
        t.owner,
        start ? 'running' : 'queued',
        t.priority,
        t.thread_id,
        t.created_at,
        t.deadline_at,
        t.idempotency_key,
        t.input_hash,
        toJson(t.input) ?? 'null',
        t.options === null ? null : (toJson(t.options) ?? null),
        start ? 2 : 1,
        start ? on.now : null,
        start ? on.nodeId : null,
        start ? addMs(on.now, on.leaseMs) : null,
        start ? 1 : 0,
      ) as unknown as TaskRow;
      this.#insertEvent(t.id, 1, 'task.queued', '{}', t.created_at);
      if (!start) return { kind: 'created', task: toTask(row) };
      this.#insertEvent(t.id, 2, 'task.started', JSON.stringify({ attempt: 1 }), on.now);
      const task = toTask(row);
      return { kind: 'created', task, started: { task, lastSeq: 2, checkpoint: null, options: t.options } };
    });
  }

  async getTask(id: string, owner?: string): Promise<Task | null> {
    const row = this.#q('SELECT * FROM tasks WHERE id = ?').get(id) as TaskRow | undefined;
    if (!row || (owner !== undefined && row.owner !== owner)) return null;
    return toTask(row);
  }

  async listTasks(filter: ListTasksFilter): Promise<Page<Task>> {
    const limit = clampLimit(filter.limit);
    const before = pageStart('t', filter.cursor);
    // One statement per combination of filters present (a handful of texts, each
    // prepared once), so the planner sees real predicates. Index choice is pinned
    // where statistics could mislead it: with one owner (`local`) owning everything,
    // the owner index says nothing about a thread or the few active tasks.
    const where = ['owner = ?', 'num < ?'];
    const params: SQLInputValue[] = [filter.owner, before];
    let from = 'tasks';
    const statuses = filter.status !== undefined && filter.status.length > 0 ? [...new Set(filter.status)] : null;
    if (filter.thread_id !== undefined) {
      where[0] = '+owner = ?'; // not the owner index: the thread's own index is far narrower
      where.push('thread_id = ?');
      params.push(filter.thread_id);
    } else if (statuses !== null && statuses.every((s) => !TERMINAL_STATUSES.has(s))) {
      from = 'tasks INDEXED BY tasks_active'; // active tasks are few per owner (queue limits)
      where.push(ACTIVE);
    }
    if (statuses !== null) {
      where.push(statuses.length === 1 ? 'status = ?' : `status IN (${statuses.map(() => '?').join(', ')})`);
      params.push(...statuses);
    }
    if (filter.type !== undefined) {
      where.push('type = ?');
      params.push(filter.type);
    }
    params.push(limit + 1);
    const rows = this.#q(`SELECT * FROM ${from} WHERE ${where.join(' AND ')} ORDER BY num DESC LIMIT ?`).all(
      ...params,
    ) as unknown as TaskRow[];
    return pageOf(rows, limit, 't', toTask);
  }

  async findActiveTaskIds(filter: BatchCancelFilter): Promise<string[]> {
    const wanted = filter.status !== undefined && filter.status.length > 0 ? filter.status : NON_TERMINAL;
    const statuses = wanted.filter((s) => !TERMINAL_STATUSES.has(s));
    if (statuses.length === 0) return [];
    const unique = [...new Set(statuses)];
    const where = ['owner = ?', ACTIVE, `status IN (${unique.map(() => '?').join(', ')})`];
    const params: SQLInputValue[] = [filter.owner, ...unique];
    if (filter.type !== undefined) {
      where.push('type = ?');
      params.push(filter.type);
    }
    if (filter.thread_id !== undefined) {
      where.push('thread_id = ?');
      params.push(filter.thread_id);
    }
    if (filter.created_before !== undefined) {
      where.push('created_at < ?');
      params.push(filter.created_before);
    }
    const rows = this.#q(`SELECT id FROM tasks INDEXED BY tasks_active WHERE ${where.join(' AND ')} ORDER BY num`).all(
      ...params,
    ) as Array<{
      id: string;
    }>;
    return rows.map((r) => r.id);
  }

  async countByStatus(): Promise<Record<TaskStatus, number>> {
    const out = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
    // Two index-only scans (active rows, ended rows) rather than one over the table.
    for (const where of [ACTIVE, TERMINAL]) {
      const rows = this.#q(`SELECT status, COUNT(*) AS n FROM tasks WHERE ${where} GROUP BY status`).all() as Array<{
        status: TaskStatus;
        n: number;
      }>;
      for (const r of rows) out[r.status] = r.n;
    }
    return out;
  }

  async findCachedResult(owner: string, type: string, inputHash: string, since: string): Promise<Task | null> {
    const row = this.#q(
      `SELECT * FROM tasks WHERE owner = ? AND type = ? AND input_hash = ? AND status = 'completed' AND created_at >= ?
       ORDER BY num DESC LIMIT 1`,
    ).get(owner, type, inputHash, since) as TaskRow | undefined;
    return row ? toTask(row) : null;
  }

  async deleteTask(id: string, owner: string): Promise<1 | 0 | 'active'> {
    return this.#tx(() => {
      const row = this.#q('SELECT status FROM tasks WHERE id = ? AND owner = ?').get(id, owner) as
        { status: TaskStatus } | undefined;
      if (!row) return 0;
      if (!TERMINAL_STATUSES.has(row.status)) return 'active';
      this.#q('DELETE FROM tasks WHERE id = ?').run(id);
      return 1;
    });
  }

  async claimTasks(opts: ClaimOptions): Promise<ClaimedTask[]> {
    if (opts.max <= 0 || opts.maxRunningPerOwner <= 0) return [];
    const leaseUntil = addMs(opts.now, opts.leaseMs);
    const pageSize = Math.min(256, opts.max + 16);
    return this.#tx(() => {
      const running = new Map<string, number>();
      const saturated: string[] = [];
      const counts = this.#q(
        `SELECT owner, COUNT(*) AS n FROM tasks WHERE status IN ('running', 'cancelling') GROUP BY owner`,
      ).all() as Array<{ owner: string; n: number }>;
      for (const { owner, n } of counts) {
        running.set(owner, n);
        if (n >= opts.maxRunningPerOwner) saturated.push(owner);
      }

      // Candidates in claim order, already excluding saturated owners and any thread
      // task that is not its thread's next one (thread busy, or an older task queued).
      // So a thread contributes at most one candidate, and the only thing that can
      // change within this call is an owner reaching its limit: that owner joins
      // `saturated` and the next page query excludes it. Every page therefore makes
      // progress, and no statement scans rows it already rejected.
      // Remote-worker types: claimable only for the owners a worker here can serve.
      const remote =
        opts.remote && opts.remote.types.length > 0
          ? [
              JSON.stringify(opts.remote.types),
              JSON.stringify(opts.remote.allow.map((p) => `${p.owner}\u001f${p.type}`)),
            ]
          : null;
      const page = (): Array<{ id: string; owner: string }> => {
        const sql = CLAIM_SQL[(saturated.length === 0 ? 0 : 1) + (remote ? 2 : 0)]!;
        const args: Array<string | number> = saturated.length === 0 ? [] : [JSON.stringify(saturated)];
        if (remote) args.push(...remote);
        return this.#q(sql).all(...args, opts.now, pageSize) as Array<{ id: string; owner: string }>;
      };
      const start = this.#q(
        `UPDATE tasks SET status = 'running', started_at = ?, node_id = ?, lease_until = ?,
           attempt = attempt + 1, last_seq = last_seq + 1
         WHERE id = ? AND status = 'queued' RETURNING *`,
      );
      const out: ClaimedTask[] = [];
      while (out.length < opts.max) {
        const rows = page();
        const progressBefore = out.length + saturated.length;
        for (const c of rows) {
          if (out.length >= opts.max) break;
          const n = running.get(c.owner) ?? 0;
          if (n >= opts.maxRunningPerOwner) continue;
          const row = start.get(opts.now, opts.nodeId, leaseUntil, c.id) as TaskRow | undefined;
          if (!row) continue;
          this.#insertEvent(row.id, row.last_seq, 'task.started', JSON.stringify({ attempt: row.attempt }), opts.now);
          out.push({
            task: toTask(row),
            lastSeq: row.last_seq,
            checkpoint: fromJson(row.checkpoint),
            options: (fromJson(row.options) as TaskRunOptions | null) ?? null,
          });
          running.set(c.owner, n + 1);
          if (n + 1 >= opts.maxRunningPerOwner) saturated.push(c.owner);
        }
        // A full page that neither claimed nor saturated anything would come back identical.
        if (rows.length < pageSize || out.length + saturated.length === progressBefore) break;
      }
      return out;
    });
  }

  async renewLeases(nodeId: string, leaseMs: number, now: string, held: readonly string[] = []): Promise<LeaseRenewal> {
    const renewed = this.#q(
      `UPDATE tasks SET lease_until = ?
       WHERE node_id = ? AND status IN ('running', 'cancelling') AND id IN (SELECT value FROM json_each(?))
       RETURNING id, status, cancel_reason`,
    ).all(addMs(now, leaseMs), nodeId, JSON.stringify(held)) as Array<{
      id: string;
      status: TaskStatus;
      cancel_reason: CancelReason | null;
    }>;
    return leaseRenewalOf(renewed, held);
  }

  async writeEvents(writes: EventWrite[]): Promise<void> {
    if (writes.length === 0) return;
    this.#tx(() => {
      // Events are inserted one by one; row patches are folded per task so a batch of
      // fifty deltas costs one row update, not fifty.
      const merged = new Map<string, MergedPatch>();
      for (const { event, patch } of writes) {
        this.#insertEvent(event.task_id, event.seq, event.type, JSON.stringify(event.data), event.created_at);
        let m = merged.get(event.task_id);
        if (m === undefined) {
          m = { first: event.seq, seq: event.seq, append: '' };
          merged.set(event.task_id, m);
        } else if (event.seq > m.seq) m.seq = event.seq;
        if (patch !== undefined) foldPatch(m, patch);
      }
      const update = this.#q(
        `UPDATE tasks SET
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
         WHERE id = :id AND last_seq < :first`,
      );
      const appendOnly = this.#q(
        'UPDATE tasks SET output_text = output_text || ?, last_seq = MAX(last_seq, ?) WHERE id = ? AND last_seq < ?',
      );
      // The fence: a batch whose events are not all above the stored log (its seqs skip a
      // gap recovery left, so no key collides) is from a node that lost the task.
      const fenced = (id: string, m: MergedPatch): LeashError =>
        new LeashError('event_conflict', `task ${id} has events past seq ${m.first - 1} already`, {
          details: { task_id: id, seq: m.first },
        });
      for (const [id, m] of merged) {
        // A streaming task's batch only appends text: the short statement (binding twenty
        // named parameters per task was a seventh of this thread's time under 1,000 streams).
        if (
          m.status === undefined &&
          m.progress === undefined &&
          m.progress_message === undefined &&
          m.result === undefined &&
          m.error === undefined &&
          m.cancel === undefined &&
          m.ended_at === undefined
        ) {
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

  async listEvents(taskId: string, afterSeq: number, limit?: number): Promise<TaskEvent[]> {
    const rows = this.#q('SELECT * FROM task_events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(
      taskId,
      afterSeq,
      limit === undefined ? -1 : Math.max(0, Math.floor(limit)),
    ) as unknown as EventRow[];
    return rows.map(toEvent);
  }

  async saveCheckpoint(taskId: string, state: unknown): Promise<void> {
    this.#q('UPDATE tasks SET checkpoint = ? WHERE id = ?').run(toJson(state), taskId);
  }

  async cancelQueued(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    return this.#tx(() => {
      const row = this.#q(
        `UPDATE tasks SET status = 'cancelled', cancel_reason = ?, cancel_requested_at = ?, ended_at = ?,
           last_seq = last_seq + 1
         WHERE id = ? AND status = 'queued' RETURNING *`,
      ).get(reason, now, now, id) as TaskRow | undefined;
      if (!row) return null;
      this.#insertEvent(
        id,
        row.last_seq,
        'task.cancelled',
        JSON.stringify({ reason, output_text: row.output_text }),
        now,
      );
      return toTask(row);
    });
  }

  async expireQueued(now: string, limit = 256): Promise<Task[]> {
    // Read first, outside a write transaction: almost always nothing is due.
    const due = this.#q(
      `SELECT id FROM tasks INDEXED BY tasks_queued_deadline WHERE status = 'queued' AND deadline_at <= ?
       ORDER BY deadline_at LIMIT ?`,
    ).all(now, limit) as Array<{ id: string }>;
    if (due.length === 0) return [];
    return this.#tx(() => {
      const out: Task[] = [];
      const end = this.#q(
        `UPDATE tasks SET status = 'cancelled', cancel_reason = 'deadline', cancel_requested_at = deadline_at,
           ended_at = ?1, last_seq = last_seq + 1
         WHERE id = ?2 AND status = 'queued' AND deadline_at <= ?1 RETURNING *`,
      );
      for (const { id } of due) {
        const row = end.get(now, id) as TaskRow | undefined;
        if (!row) continue;
        const data = { reason: 'deadline', output_text: row.output_text };
        this.#insertEvent(id, row.last_seq, 'task.cancelled', JSON.stringify(data), now);
        out.push(toTask(row));
      }
      return out;
    });
  }

  async markDetached(id: string): Promise<void> {
    this.#q('UPDATE tasks SET cancel_detached = 1 WHERE id = ?').run(id);
  }

  async requestCancel(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    const row = this.#q(
      `UPDATE tasks SET status = 'cancelling', cancel_reason = ?, cancel_requested_at = ?
       WHERE id = ? AND status = 'running' RETURNING *`,
    ).get(reason, now, id) as TaskRow | undefined;
    return row ? toTask(row) : null;
  }

  async recoverLost(opts: {
    nodeId?: string;
    expiredBefore?: string;
    resumableTypes: string[];
    now: string;
  }): Promise<Task[]> {
    if (opts.nodeId === undefined && opts.expiredBefore === undefined) {
      throw new LeashError('invalid_request', 'recoverLost needs nodeId or expiredBefore');
    }
    const resumable = new Set(opts.resumableTypes);
    return this.#tx(() => {
      const lost = this.#q(
        `SELECT id, type, status, last_seq FROM tasks INDEXED BY tasks_running
         WHERE status IN ('running', 'cancelling')
           AND ((?1 IS NOT NULL AND node_id = ?1) OR (?2 IS NOT NULL AND lease_until < ?2))
         ORDER BY num`,
      ).all(opts.nodeId ?? null, opts.expiredBefore ?? null) as Array<{
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
        if (t.status === 'cancelling') {
          row = this.#q(
            `UPDATE tasks SET status = 'cancelled', ended_at = ?1, lease_until = NULL,
               cancel_reason = COALESCE(cancel_reason, 'shutdown'), cancel_requested_at = COALESCE(cancel_requested_at, ?1),
               last_seq = ?3
             WHERE id = ?2 RETURNING *`,
          ).get(opts.now, t.id, next) as TaskRow | undefined;
          if (row) {
            const data = { reason: row.cancel_reason, output_text: row.output_text, last_durable_seq: durable };
            this.#insertEvent(t.id, row.last_seq, 'task.cancelled', JSON.stringify(data), opts.now);
          }
        } else if (resumable.has(t.type)) {
          row = this.#q(
            `UPDATE tasks SET status = 'queued', node_id = NULL, lease_until = NULL, last_seq = ?
             WHERE id = ? RETURNING *`,
          ).get(next, t.id) as TaskRow | undefined;
          const data = { last_durable_seq: durable };
          if (row) this.#insertEvent(t.id, row.last_seq, 'task.queued', JSON.stringify(data), opts.now);
        } else {
          row = this.#q(
            `UPDATE tasks SET status = 'failed', error = ?1, ended_at = ?2, lease_until = NULL, last_seq = ?4
             WHERE id = ?3 RETURNING *`,
          ).get(JSON.stringify(nodeLost(durable)), opts.now, t.id, next) as TaskRow | undefined;
          const data = { error: nodeLost(durable), last_durable_seq: durable };
          if (row) this.#insertEvent(t.id, row.last_seq, 'task.failed', JSON.stringify(data), opts.now);
        }
        if (row) out.push(toTask(row));
      }
      return out;
    });
  }

  async purgeEnded(endedBefore: string): Promise<number> {
    // Events go with their task (ON DELETE CASCADE); `changes` counts only tasks.
    const res = this.#q(`DELETE FROM tasks WHERE status IN ('completed', 'failed', 'cancelled') AND ended_at < ?`).run(
      endedBefore,
    );
    return Number(res.changes);
  }

  // ── threads and messages ─────────────────────────────────────────────────

  async createThread(t: {
    id: string;
    owner: string;
    created_at: string;
    metadata: Record<string, unknown>;
  }): Promise<Thread> {
    return this.#tx(() => {
      this.#q('INSERT INTO threads (id, owner, created_at, metadata) VALUES (?, ?, ?, ?)').run(
        t.id,
        t.owner,
        t.created_at,
        JSON.stringify(t.metadata ?? {}),
      );
      return toThread(
        this.#q(`SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.id = ?`).get(t.id) as unknown as ThreadRow,
      );
    });
  }

  async getThread(id: string, owner?: string): Promise<Thread | null> {
    const row = this.#q(`SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.id = ?`).get(id) as ThreadRow | undefined;
    if (!row || (owner !== undefined && row.owner !== owner)) return null;
    return toThread(row);
  }

  async listThreads(owner: string, limit: number, cursor?: string): Promise<Page<Thread>> {
    const n = clampLimit(limit);
    const before = pageStart('h', cursor);
    const rows = this.#q(
      `SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.owner = ? AND th.num < ? ORDER BY th.num DESC LIMIT ?`,
    ).all(owner, before, n + 1) as unknown as ThreadRow[];
    return pageOf(rows, n, 'h', toThread);
  }

  async deleteThread(id: string, owner: string): Promise<boolean> {
    // Messages go with the thread (ON DELETE CASCADE). Tasks keep their thread_id as history.
    return Number(this.#q('DELETE FROM threads WHERE id = ? AND owner = ?').run(id, owner).changes) > 0;
  }

  async appendMessage(m: NewMessage): Promise<Message> {
    try {
      // seq is computed inside the INSERT itself, so it is atomic without a transaction.
      const row = this.#q(
        `INSERT INTO messages (id, thread_id, seq, role, content, status, task_id, created_at, usage)
         VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE thread_id = ?2), ?3, ?4, ?5, ?6, ?7, NULL)
         RETURNING *`,
      ).get(m.id, m.thread_id, m.role, m.content, m.status, m.task_id, m.created_at) as unknown as MessageRow;
      return toMessage(row);
    } catch (e) {
      if (errcodeOf(e) === SQLITE_CONSTRAINT_FOREIGNKEY) {
        throw new LeashError('not_found', `thread ${m.thread_id} does not exist`, { cause: e });
      }
      throw e;
    }
  }

  async updateMessage(
    id: string,
    patch: { content?: string; append?: string; status?: MessageStatus; usage?: Message['usage'] },
  ): Promise<void> {
    // An unknown id is a no-op: a rollback may delete a turn while its stream still writes.
    this.#q(
      `UPDATE messages SET
         content = (CASE WHEN :set_content THEN :content ELSE content END) || :append,
         status = CASE WHEN :set_status THEN :status ELSE status END,
         usage = CASE WHEN :set_usage THEN :usage ELSE usage END
       WHERE id = :id`,
    ).run({
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

  async listMessages(threadId: string): Promise<Message[]> {
    const rows = this.#q('SELECT * FROM messages WHERE thread_id = ? ORDER BY seq').all(
      threadId,
    ) as unknown as MessageRow[];
    return rows.map(toMessage);
  }

  async listRecentMessages(threadId: string, limit: number, beforeSeq = Number.MAX_SAFE_INTEGER): Promise<Message[]> {
    const rows = this.#q('SELECT * FROM messages WHERE thread_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?').all(
      threadId,
      beforeSeq,
      Math.max(0, Math.floor(limit)),
    ) as unknown as MessageRow[];
    return rows.reverse().map(toMessage);
  }

  async countMessagesBefore(threadId: string, beforeSeq: number): Promise<number> {
    const row = this.#q('SELECT COUNT(*) AS n FROM messages WHERE thread_id = ? AND seq < ?').get(
      threadId,
      beforeSeq,
    ) as {
      n: number;
    };
    return Number(row.n);
  }

  async deleteMessagesOfTask(threadId: string, taskId: string): Promise<number> {
    return Number(this.#q('DELETE FROM messages WHERE thread_id = ? AND task_id = ?').run(threadId, taskId).changes);
  }

  // ── helpers ──────────────────────────────────────────────────────────────

  #insertEvent(taskId: string, seq: number, type: string, data: string, createdAt: string): void {
    try {
      this.#q('INSERT INTO task_events (task_id, seq, type, created_at, data) VALUES (?, ?, ?, ?, ?)').run(
        taskId,
        seq,
        type,
        createdAt,
        data,
      );
    } catch (e) {
      const code = errcodeOf(e);
      if (code === SQLITE_CONSTRAINT_PRIMARYKEY || code === SQLITE_CONSTRAINT_UNIQUE) {
        throw new LeashError('event_conflict', `task ${taskId} already has an event with seq ${seq}`, {
          details: { task_id: taskId, seq },
          cause: e,
        });
      }
      if (code === SQLITE_CONSTRAINT_FOREIGNKEY) {
        throw new LeashError('not_found', `task ${taskId} does not exist`, { details: { task_id: taskId }, cause: e });
      }
      throw e;
    }
  }
}

/**
 * Queued tasks in claim order that may start now: not past their deadline (those never
 * start: the reaper ends them), not of an owner already at its limit
 * (the JSON list; omitted when empty, it costs a bloom filter) and, for a thread's
 * task, only its thread's next one (nothing running or cancelling, nothing older queued).
 */
function claimCandidatesSql(excludeOwners: boolean, remote: boolean): string {
  return `SELECT t.id, t.owner FROM tasks t
    WHERE t.status = 'queued'${excludeOwners ? `\n      AND t.owner NOT IN (SELECT value FROM json_each(?))` : ''}${
      remote
        ? `\n      AND (t.type NOT IN (SELECT value FROM json_each(?))
           OR (t.owner || char(31) || t.type) IN (SELECT value FROM json_each(?)))`
        : ''
    }
      AND (t.deadline_at IS NULL OR t.deadline_at > ?)
      AND (t.thread_id IS NULL OR (
        NOT EXISTS (SELECT 1 FROM tasks o WHERE o.thread_id = t.thread_id AND o.status IN ('running', 'cancelling'))
        AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.thread_id = t.thread_id AND o.status = 'queued' AND o.num < t.num)))
    ORDER BY t.priority DESC, t.num
    LIMIT ?`;
}
const CLAIM_SQL = [
  claimCandidatesSql(false, false),
  claimCandidatesSql(true, false),
  claimCandidatesSql(false, true),
  claimCandidatesSql(true, true),
] as const;

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
