// The Store for several `leash serve` nodes over one PostgreSQL. PostgreSQL does the
// coordination: row locks (FOR UPDATE SKIP LOCKED) and advisory locks for claiming,
// LISTEN/NOTIFY for wake-ups, cancels and event announcements (notifier.ts), leases
// in the rows for recovery. Each method is one statement where it can be (a
// data-modifying CTE keeps a row change and its event atomic in one round trip) and
// a short transaction where it cannot. Hot statements are named, so each pooled
// connection plans them once.

import pg from 'pg';
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
import { clampLimit, pageOf, pageStart } from '../paging.ts';
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
  Store,
  Thread,
  ClaimedTask,
} from '../store.ts';
import { SEQ_AHEAD } from '../store.ts';
import { claimWith } from './claim.ts';
import { migrate } from './migrations.ts';
import { PgNotifier } from './notifier.ts';
import {
  pgText,
  toEvent,
  toJson,
  toMessage,
  toTask,
  toThread,
  type PgEventRow,
  type PgMessageRow,
  type PgTaskRow,
  type PgThreadRow,
} from './rows.ts';
import { writeEventsWith } from './write-events.ts';
import { addMs, leaseRenewalOf, nodeLostMessage } from '../lease.ts';

// Recovery writes above every seq the lost node may have handed out (SEQ_AHEAD past its
// last commit); `last_seq` on the right of a SET is the row's old value: the last durable seq.
const RECOVERED_SEQ = `last_seq = last_seq + ${SEQ_AHEAD} + 1`;
const DURABLE_SEQ = `up.last_seq - ${SEQ_AHEAD} - 1`;
const NON_TERMINAL: TaskStatus[] = TASK_STATUSES.filter((s) => !TERMINAL_STATUSES.has(s));

const THREAD_COLUMNS = `th.num, th.id, th.owner, th.created_at, th.metadata,
  EXISTS (SELECT 1 FROM tasks t WHERE t.thread_id = th.id AND t.status IN ('queued', 'running', 'cancelling')) AS busy`;

export interface PostgresStoreOptions {
  /** Connections in the pool (default 10). */
  poolMax?: number;
  /** Health check period of the LISTEN connection (ms, default 5000). */
  listenPingMs?: number;
  /** Connection trouble (never thrown): the pool and the LISTEN session recover by themselves. */
  onError?: (err: unknown, what: string) => void;
}

/** The plain create: insert and `task.queued`; counting the owner's queue stops at the limit. */
const CREATE = `WITH ins AS (
    INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at,
      idempotency_key, input_hash, input, options, last_seq)
    SELECT $1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10::json, $11::json, 1
    WHERE (SELECT count(*) FROM (SELECT 1 FROM tasks WHERE owner = $3 AND status = 'queued' LIMIT $12) q) < $12
    ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING *
  ), ev AS (
    INSERT INTO task_events (task_id, seq, type, created_at, data)
    SELECT id, 1, 'task.queued', created_at, '{}' FROM ins
  )
  SELECT * FROM ins`;

export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  readonly notifier: PgNotifier;
  /** The connection URL with any password removed (for logs). */
  readonly url: string;
  readonly #pool: pg.Pool;
  #closed = false;

  private constructor(pool: pg.Pool, notifier: PgNotifier, url: string) {
    this.#pool = pool;
    this.notifier = notifier;
    this.url = url;
  }

  /** Connects (pool + LISTEN session). Call `migrate()` next. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const onError =
      opts.onError ??
      ((err: unknown, what: string) => {
        const e = err instanceof Error ? err : new Error(String(err));
        process.emitWarning(e, { code: 'LEASH_POSTGRES', detail: what });
      });
    const connection: pg.ClientConfig = { connectionString: url, connectionTimeoutMillis: 10_000 };
    const pool = new pg.Pool({
      ...connection,
      max: opts.poolMax ?? 10,
      application_name: 'leash',
      keepAlive: true,
    });
    // Generic plans: leash's statements are prepared (named) and leash_claim's are
    // cached by PL/pgSQL; with the default plan_cache_mode PostgreSQL re-planned them on
    // each call (custom plans), a tenth of its CPU per task in a profile. Their plans do
    // not depend on the values (statuses are literals, so the partial indexes apply).
    // A SET rather than a startup option, which poolers such as PgBouncer refuse; the
    // query is queued on the new connection before anyone gets it, and a failure only
    // costs the optimisation.
    pool.on('connect', (client) => {
      client.query('SET plan_cache_mode = force_generic_plan').catch(() => {});
    });
    // An idle pooled connection that breaks (server restart) is dropped by the pool;
    // without a listener the 'error' event would crash the process.
    pool.on('error', (err) => onError(err, 'idle PostgreSQL connection failed (it is replaced on next use)'));
    const notifier = new PgNotifier({
      connection,
      pool,
      onError,
      ...(opts.listenPingMs !== undefined && { pingMs: opts.listenPingMs }),
    });
    const safeUrl = redact(url);
    try {
      await notifier.start();
    } catch (cause) {
      await notifier.close().catch(() => {});
      await pool.end().catch(() => {});
      throw new LeashError(
        'store_unavailable',
        `cannot connect to PostgreSQL at ${safeUrl}: ${(cause as Error).message}`,
        {
          cause,
        },
      );
    }
    return new PostgresStore(pool, notifier, safeUrl);
  }

  // ── plumbing ─────────────────────────────────────────────────────────────

  #live(): pg.Pool {
    if (this.#closed) throw new LeashError('store_closed', 'the PostgreSQL store is closed');
    return this.#pool;
  }

  /** Runs one statement; `name` makes it a prepared statement on each connection. */
  async #q<R extends pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
    name?: string,
  ): Promise<pg.QueryResult<R>> {
    const pool = this.#live();
    try {
      return await pool.query<R>(name === undefined ? { text, values } : { name, text, values });
    } catch (e) {
      throw unavailable(e);
    }
  }

  /** A transaction on one pooled connection. */
  async #tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    try {
      return await this.#txOn(fn);
    } catch (e) {
      throw unavailable(e);
    }
  }

  async #txOn<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.#checkout();
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      c.done();
      return out;
    } catch (e) {
      try {
        await c.query('ROLLBACK');
        c.done();
      } catch (rollbackError) {
        c.done(rollbackError as Error); // a broken connection is destroyed, not reused
      }
      throw e;
    }
  }

  /**
   * A pooled client for several statements. pg-pool takes its idle error listener off
   * a client it hands out, and a checked-out client whose connection dies (PostgreSQL
   * shutting down) emits 'error': unheard, that would end the process. This one is
   * heard until the client goes back, and a client that failed is destroyed then.
   */
  async #checkout(): Promise<pg.PoolClient & { done(err?: Error | boolean): void }> {
    const c = await this.#live().connect();
    let failed: Error | null = null;
    const onError = (err: Error): void => {
      failed ??= err;
    };
    c.on('error', onError);
    return Object.assign(c, {
      done: (err?: Error | boolean): void => {
        const broken = err || failed;
        // A broken client is thrown away, and its connection may still report its end:
        // keep listening. A healthy one goes back to the pool, which listens again.
        if (!broken) c.off('error', onError);
        c.release(broken || undefined);
      },
    });
  }

  async migrate(): Promise<void> {
    const c = await this.#checkout();
    try {
      await migrate(c);
      c.done();
    } catch (e) {
      c.done(true);
      throw e;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.notifier.close().catch(() => {});
    await this.#pool.end().catch(() => {});
  }

  async ping(): Promise<void> {
    await this.#q('SELECT 1');
  }

  // ── tasks ────────────────────────────────────────────────────────────────

  async createTask(t: NewTask, opts: CreateTaskOptions): Promise<CreateTaskResult> {
    // One statement: the insert (skipped on a full queue or a repeated Idempotency-Key)
    // and its event; with an eager start, one call of leash_create (migrations 4 and 5),
    // which also decides whether the task starts at once. The queue limit is checked in the
    // same statement, so it is exact per node and may be overshot by a create racing on
    // another node: a soft limit, as queue limits are.
    for (let attempt = 0; attempt < 3; attempt++) {
      const on = opts.startOn;
      const base = [
        t.id,
        t.type,
        t.owner,
        t.priority,
        t.thread_id,
        t.created_at,
        t.deadline_at,
        t.idempotency_key,
        t.input_hash,
        toJson(t.input) ?? 'null',
        t.options === null ? null : toJson(t.options),
        opts.maxQueuedPerOwner,
      ];
      const ins =
        on === undefined || t.thread_id !== null
          ? await this.#q<PgTaskRow>(CREATE, base, 'leash_create')
          : await this.#q<PgTaskRow>(
              'SELECT * FROM leash_create($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json, $11::json, $12, $13, $14, $15, $16)',
              [...base, on.nodeId, on.maxRunningPerOwner, on.now, addMs(on.now, on.leaseMs)],
              'leash_create_eager',
            );
      const row = ins.rows[0];
      if (row) {
        const task = toTask(row);
        if (row.status !== 'running') return { kind: 'created', task };
        return {
          kind: 'created',
          task,
          started: { task, lastSeq: row.last_seq, checkpoint: null, options: t.options },
        };
      }
      if (t.idempotency_key !== null) {
        const prior = await this.#q<PgTaskRow>('SELECT * FROM tasks WHERE owner = $1 AND idempotency_key = $2', [
          t.owner,
          t.idempotency_key,
        ]);
        if (prior.rows[0]) return { kind: 'existing', task: toTask(prior.rows[0]) };
      }
      const queued = await this.#queuedCount(t.owner);
      if (queued >= opts.maxQueuedPerOwner) return { kind: 'queue_full', queued };
      // The queue drained (or the keyed task was deleted) in between: try again.
    }
    return { kind: 'queue_full', queued: await this.#queuedCount(t.owner) };
  }

  async #queuedCount(owner: string): Promise<number> {
    const r = await this.#q<{ n: number }>(
      `SELECT count(*)::int AS n FROM tasks WHERE owner = $1 AND status = 'queued'`,
      [owner],
      'leash_queued_count',
    );
    return r.rows[0]!.n;
  }

  async getTask(id: string, owner?: string): Promise<Task | null> {
    const row = (await this.#q<PgTaskRow>('SELECT * FROM tasks WHERE id = $1', [id], 'leash_get_task')).rows[0];
    if (!row || (owner !== undefined && row.owner !== owner)) return null;
    return toTask(row);
  }

  async listTasks(filter: ListTasksFilter): Promise<Page<Task>> {
    const limit = clampLimit(filter.limit);
    const before = pageStart('t', filter.cursor);
    const params: unknown[] = [filter.owner, before];
    const where = ['owner = $1', 'num < $2'];
    const statuses = filter.status !== undefined && filter.status.length > 0 ? [...new Set(filter.status)] : null;
    if (filter.thread_id !== undefined) {
      params.push(filter.thread_id);
      where.push(`thread_id = $${params.length}`);
    }
    if (statuses !== null) {
      if (statuses.every((s) => !TERMINAL_STATUSES.has(s))) where.push(`status IN ('queued', 'running', 'cancelling')`);
      params.push(statuses);
      where.push(`status = ANY($${params.length}::text[])`);
    }
    if (filter.type !== undefined) {
      params.push(filter.type);
      where.push(`type = $${params.length}`);
    }
    params.push(limit + 1);
    const rows = (
      await this.#q<PgTaskRow>(
        `SELECT * FROM tasks WHERE ${where.join(' AND ')} ORDER BY num DESC LIMIT $${params.length}`,
        params,
      )
    ).rows;
    return pageOf(rows, limit, 't', toTask);
  }

  async findActiveTaskIds(filter: BatchCancelFilter): Promise<string[]> {
    const wanted = filter.status !== undefined && filter.status.length > 0 ? filter.status : NON_TERMINAL;
    const statuses = [...new Set(wanted.filter((s) => !TERMINAL_STATUSES.has(s)))];
    if (statuses.length === 0) return [];
    const params: unknown[] = [filter.owner, statuses];
    const where = ['owner = $1', `status IN ('queued', 'running', 'cancelling')`, 'status = ANY($2::text[])'];
    if (filter.type !== undefined) {
      params.push(filter.type);
      where.push(`type = $${params.length}`);
    }
    if (filter.thread_id !== undefined) {
      params.push(filter.thread_id);
      where.push(`thread_id = $${params.length}`);
    }
    if (filter.created_before !== undefined) {
      params.push(filter.created_before);
      where.push(`created_at < $${params.length}`);
    }
    const rows = (
      await this.#q<{ id: string }>(`SELECT id FROM tasks WHERE ${where.join(' AND ')} ORDER BY num`, params)
    ).rows;
    return rows.map((r) => r.id);
  }

  async countByStatus(): Promise<Record<TaskStatus, number>> {
    const out = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
    // Two scans of partial indexes (active rows, ended rows) rather than one of the table.
    const rows = (
      await this.#q<{ status: TaskStatus; n: number }>(
        `SELECT status, count(*)::int AS n FROM tasks WHERE status IN ('queued', 'running', 'cancelling') GROUP BY status
         UNION ALL
         SELECT status, count(*)::int FROM tasks WHERE status IN ('completed', 'failed', 'cancelled') GROUP BY status`,
        [],
        'leash_count_by_status',
      )
    ).rows;
    for (const r of rows) out[r.status] = r.n;
    return out;
  }

  async findCachedResult(owner: string, type: string, inputHash: string, since: string): Promise<Task | null> {
    const row = (
      await this.#q<PgTaskRow>(
        `SELECT * FROM tasks WHERE owner = $1 AND type = $2 AND input_hash = $3 AND status = 'completed'
           AND created_at >= $4 ORDER BY num DESC LIMIT 1`,
        [owner, type, inputHash, since],
        'leash_cached',
      )
    ).rows[0];
    return row ? toTask(row) : null;
  }

  async deleteTask(id: string, owner: string): Promise<1 | 0 | 'active'> {
    const del = await this.#q(
      `DELETE FROM tasks WHERE id = $1 AND owner = $2 AND status IN ('completed', 'failed', 'cancelled')`,
      [id, owner],
    );
    if ((del.rowCount ?? 0) > 0) return 1;
    const left = (
      await this.#q<{ status: TaskStatus }>('SELECT status FROM tasks WHERE id = $1 AND owner = $2', [id, owner])
    ).rows[0];
    if (!left) return 0;
    return TERMINAL_STATUSES.has(left.status) ? 0 : 'active';
  }

  async claimTasks(opts: ClaimOptions): Promise<ClaimedTask[]> {
    if (opts.max <= 0 || opts.maxRunningPerOwner <= 0) return [];
    return claimWith(this.#live(), opts, addMs(opts.now, opts.leaseMs)).catch((e: unknown) => {
      throw unavailable(e);
    });
  }

  async renewLeases(nodeId: string, leaseMs: number, now: string, held: readonly string[] = []): Promise<LeaseRenewal> {
    const rows = (
      await this.#q<{ id: string; status: TaskStatus; cancel_reason: CancelReason | null }>(
        `UPDATE tasks SET lease_until = $2
         WHERE node_id = $1 AND status IN ('running', 'cancelling') AND id = ANY($3::text[])
         RETURNING id, status, cancel_reason`,
        [nodeId, addMs(now, leaseMs), held],
        'leash_renew',
      )
    ).rows;
    return leaseRenewalOf(rows, held);
  }

  async writeEvents(writes: EventWrite[]): Promise<void> {
    if (writes.length === 0) return;
    await writeEventsWith(this.#live(), writes).catch((e: unknown) => {
      throw unavailable(e);
    });
  }

  async listEvents(taskId: string, afterSeq: number, limit?: number): Promise<TaskEvent[]> {
    const rows = (
      await this.#q<PgEventRow>(
        'SELECT * FROM task_events WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
        [taskId, afterSeq, limit === undefined ? null : Math.max(0, Math.floor(limit))],
        'leash_list_events',
      )
    ).rows;
    return rows.map(toEvent);
  }

  async saveCheckpoint(taskId: string, state: unknown): Promise<void> {
    await this.#q('UPDATE tasks SET checkpoint = $2::json WHERE id = $1', [taskId, toJson(state)], 'leash_checkpoint');
  }

  async cancelQueued(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    const row = (
      await this.#q<PgTaskRow>(
        `WITH up AS (
           UPDATE tasks SET status = 'cancelled', cancel_reason = $2, cancel_requested_at = $3, ended_at = $3,
             last_seq = last_seq + 1
           WHERE id = $1 AND status = 'queued' RETURNING *
         ), ev AS (
           INSERT INTO task_events (task_id, seq, type, created_at, data)
           SELECT id, last_seq, 'task.cancelled', $3, json_build_object('reason', cancel_reason, 'output_text', output_text)
           FROM up
         )
         SELECT * FROM up`,
        [id, reason, now],
        'leash_cancel_queued',
      )
    ).rows[0];
    return row ? toTask(row) : null;
  }

  async expireQueued(now: string, limit = 256): Promise<Task[]> {
    // SKIP LOCKED: a row a claim holds is being started or skipped by it (claims skip
    // expired tasks); another node's reaper may hold it too. The next pass sees it.
    const rows = (
      await this.#q<PgTaskRow>(
        `WITH due AS (
           SELECT id FROM tasks WHERE status = 'queued' AND deadline_at <= $1
           ORDER BY deadline_at LIMIT $2 FOR UPDATE SKIP LOCKED
         ), up AS (
           UPDATE tasks t SET status = 'cancelled', cancel_reason = 'deadline', cancel_requested_at = t.deadline_at,
             ended_at = $1, last_seq = t.last_seq + 1
           FROM due WHERE t.id = due.id AND t.status = 'queued' RETURNING t.*
         ), ev AS (
           INSERT INTO task_events (task_id, seq, type, created_at, data)
           SELECT id, last_seq, 'task.cancelled', $1, json_build_object('reason', 'deadline', 'output_text', output_text)
           FROM up
         )
         SELECT * FROM up`,
        [now, limit],
        'leash_expire_queued',
      )
    ).rows;
    return rows.map(toTask);
  }

  async markDetached(id: string): Promise<void> {
    await this.#q('UPDATE tasks SET cancel_detached = true WHERE id = $1', [id], 'leash_mark_detached');
  }

  async requestCancel(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    const row = (
      await this.#q<PgTaskRow>(
        `UPDATE tasks SET status = 'cancelling', cancel_reason = $2, cancel_requested_at = $3
         WHERE id = $1 AND status = 'running' RETURNING *`,
        [id, reason, now],
        'leash_request_cancel',
      )
    ).rows[0];
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
    return this.#tx(async (c) => {
      // SKIP LOCKED: a row some transaction holds (its node writing, another node
      // recovering it) is not ours to judge now; the next pass sees it again.
      const lost = (
        await c.query<{ id: string; type: string; status: TaskStatus }>({
          name: 'leash_lost',
          text: `SELECT id, type, status FROM tasks
                 WHERE status IN ('running', 'cancelling')
                   AND (($1::text IS NOT NULL AND node_id = $1) OR ($2::timestamptz IS NOT NULL AND lease_until < $2))
                 ORDER BY num FOR UPDATE SKIP LOCKED`,
          values: [opts.nodeId ?? null, opts.expiredBefore ?? null],
        })
      ).rows;
      if (lost.length === 0) return [];
      const resumable = new Set(opts.resumableTypes);
      const cancelling = lost.filter((t) => t.status === 'cancelling').map((t) => t.id);
      const requeue = lost.filter((t) => t.status !== 'cancelling' && resumable.has(t.type)).map((t) => t.id);
      const fail = lost.filter((t) => t.status !== 'cancelling' && !resumable.has(t.type)).map((t) => t.id);
      const rows: PgTaskRow[] = [];
      if (cancelling.length > 0) {
        rows.push(
          ...(
            await c.query<PgTaskRow>(
              `WITH up AS (
                 UPDATE tasks SET status = 'cancelled', ended_at = $2, lease_until = NULL,
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
              [cancelling, opts.now],
            )
          ).rows,
        );
      }
      if (requeue.length > 0) {
        rows.push(
          ...(
            await c.query<PgTaskRow>(
              `WITH up AS (
                 UPDATE tasks SET status = 'queued', node_id = NULL, lease_until = NULL, ${RECOVERED_SEQ}
                 WHERE id = ANY($1::text[]) RETURNING *
               ), ev AS (
                 INSERT INTO task_events (task_id, seq, type, created_at, data)
                 SELECT id, last_seq, 'task.queued', $2, json_build_object('last_durable_seq', ${DURABLE_SEQ}) FROM up
               )
               SELECT * FROM up`,
              [requeue, opts.now],
            )
          ).rows,
        );
      }
      if (fail.length > 0) {
        rows.push(
          ...(
            await c.query<PgTaskRow>(
              `WITH up AS (
                 UPDATE tasks SET status = 'failed', ended_at = $2, lease_until = NULL,
                   error = json_build_object('code', 'node_lost', 'message', replace($3, '{seq}', last_seq::text)),
                   ${RECOVERED_SEQ}
                 WHERE id = ANY($1::text[]) RETURNING *
               ), ev AS (
                 INSERT INTO task_events (task_id, seq, type, created_at, data)
                 SELECT id, last_seq, 'task.failed', $2,
                   json_build_object('error', error, 'last_durable_seq', ${DURABLE_SEQ}) FROM up
               )
               SELECT * FROM up`,
              [fail, opts.now, nodeLostMessage('{seq}')],
            )
          ).rows,
        );
      }
      return rows.sort((a, b) => Number(a.num) - Number(b.num)).map(toTask);
    });
  }

  async purgeEnded(endedBefore: string): Promise<number> {
    // Events go with their task (ON DELETE CASCADE); rowCount counts only tasks.
    const res = await this.#q(
      `DELETE FROM tasks WHERE status IN ('completed', 'failed', 'cancelled') AND ended_at < $1`,
      [endedBefore],
      'leash_purge',
    );
    return res.rowCount ?? 0;
  }

  // ── threads and messages ─────────────────────────────────────────────────

  async createThread(t: {
    id: string;
    owner: string;
    created_at: string;
    metadata: Record<string, unknown>;
  }): Promise<Thread> {
    const row = (
      await this.#q<PgThreadRow>(
        `WITH th AS (
           INSERT INTO threads (id, owner, created_at, metadata) VALUES ($1, $2, $3, $4::json) RETURNING *
         )
         SELECT ${THREAD_COLUMNS} FROM th`,
        [t.id, t.owner, t.created_at, JSON.stringify(t.metadata ?? {})],
      )
    ).rows[0]!;
    return toThread(row);
  }

  async getThread(id: string, owner?: string): Promise<Thread | null> {
    const row = (
      await this.#q<PgThreadRow>(`SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.id = $1`, [id], 'leash_get_thread')
    ).rows[0];
    if (!row || (owner !== undefined && row.owner !== owner)) return null;
    return toThread(row);
  }

  async listThreads(owner: string, limit: number, cursor?: string): Promise<Page<Thread>> {
    const n = clampLimit(limit);
    const before = pageStart('h', cursor);
    const rows = (
      await this.#q<PgThreadRow>(
        `SELECT ${THREAD_COLUMNS} FROM threads th WHERE th.owner = $1 AND th.num < $2 ORDER BY th.num DESC LIMIT $3`,
        [owner, before, n + 1],
      )
    ).rows;
    return pageOf(rows, n, 'h', toThread);
  }

  async deleteThread(id: string, owner: string): Promise<boolean> {
    // Messages go with the thread (ON DELETE CASCADE). Tasks keep their thread_id as history.
    return ((await this.#q('DELETE FROM threads WHERE id = $1 AND owner = $2', [id, owner])).rowCount ?? 0) > 0;
  }

  async appendMessage(m: NewMessage): Promise<Message> {
    // seq is computed inside the INSERT; two appends racing on one thread can compute
    // the same one, and the loser (unique violation) simply computes it again.
    for (let attempt = 0; ; attempt++) {
      try {
        const row = (
          await this.#q<PgMessageRow>(
            `INSERT INTO messages (id, thread_id, seq, role, content, status, task_id, created_at, usage)
             VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE thread_id = $2), $3, $4, $5, $6, $7, NULL)
             RETURNING *`,
            [m.id, m.thread_id, m.role, pgText(m.content), m.status, m.task_id, m.created_at],
            'leash_append_message',
          )
        ).rows[0]!;
        return toMessage(row);
      } catch (e) {
        const err = e as { code?: string; constraint?: string };
        if (err.code === '23503')
          throw new LeashError('not_found', `thread ${m.thread_id} does not exist`, { cause: e });
        if (err.code === '23505' && err.constraint === 'messages_thread_id_seq_key' && attempt < 20) continue;
        throw e;
      }
    }
  }

  async updateMessage(
    id: string,
    patch: { content?: string; append?: string; status?: MessageStatus; usage?: Message['usage'] },
  ): Promise<void> {
    // An unknown id is a no-op: a rollback may delete a turn while its stream still writes.
    await this.#q(
      `UPDATE messages SET
         content = (CASE WHEN $2 THEN $3 ELSE content END) || $4,
         status = CASE WHEN $5 THEN $6 ELSE status END,
         usage = CASE WHEN $7 THEN $8::json ELSE usage END
       WHERE id = $1`,
      [
        id,
        patch.content !== undefined,
        patch.content === undefined ? null : pgText(patch.content),
        pgText(patch.append ?? ''),
        patch.status !== undefined,
        patch.status ?? null,
        patch.usage !== undefined,
        toJson(patch.usage),
      ],
      'leash_update_message',
    );
  }

  async listMessages(threadId: string): Promise<Message[]> {
    const rows = (
      await this.#q<PgMessageRow>(
        'SELECT * FROM messages WHERE thread_id = $1 ORDER BY seq',
        [threadId],
        'leash_messages',
      )
    ).rows;
    return rows.map(toMessage);
  }

  async listRecentMessages(threadId: string, limit: number, beforeSeq = Number.MAX_SAFE_INTEGER): Promise<Message[]> {
    const rows = (
      await this.#q<PgMessageRow>(
        'SELECT * FROM messages WHERE thread_id = $1 AND seq < $2::bigint ORDER BY seq DESC LIMIT $3',
        [threadId, beforeSeq, Math.max(0, Math.floor(limit))],
        'leash_recent_messages',
      )
    ).rows;
    return rows.reverse().map(toMessage);
  }

  async countMessagesBefore(threadId: string, beforeSeq: number): Promise<number> {
    const r = await this.#q<{ n: string }>(
      'SELECT COUNT(*) AS n FROM messages WHERE thread_id = $1 AND seq < $2::bigint',
      [threadId, beforeSeq],
      'leash_count_messages',
    );
    return Number(r.rows[0]!.n);
  }

  async deleteMessagesOfTask(threadId: string, taskId: string): Promise<number> {
    return (
      (await this.#q('DELETE FROM messages WHERE thread_id = $1 AND task_id = $2', [threadId, taskId])).rowCount ?? 0
    );
  }
}

/**
 * A failure to reach PostgreSQL (down, restarting, network) as `store_unavailable`
 * (HTTP 503: try again), so a restart is not reported as an internal error. The pool
 * replaces broken connections by itself; the caller's retry or next poll succeeds
 * once the server is back. Any other error (a bad statement, a constraint) is as it was.
 */
function unavailable(e: unknown): unknown {
  if (e instanceof LeashError || !isConnectionError(e)) return e;
  return new LeashError('store_unavailable', `PostgreSQL is unavailable: ${(e as Error).message}`, { cause: e });
}

// SQLSTATE class 08 (connection exception) is matched by prefix; then admin / crash
// shutdown, "starting up", too many connections; then socket errors.
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300']);
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
// node-postgres's own connection errors carry no code.
const CLIENT_MESSAGES =
  /^Connection terminated|is not queryable|timeout exceeded when trying to connect|^Query read timeout/;

function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (code.startsWith('08') || UNAVAILABLE_CODES.has(code) || SOCKET_CODES.has(code))) {
    return true;
  }
  return e instanceof Error && CLIENT_MESSAGES.test(e.message);
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}
