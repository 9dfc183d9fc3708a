// The Store for several `leash serve` nodes over one PostgreSQL. PostgreSQL does the
// coordination: row locks (FOR UPDATE SKIP LOCKED) and advisory locks for claiming,
// LISTEN/NOTIFY for wake-ups, cancels and event announcements (notifier.ts), leases
// in the rows for recovery. A short front: each operation, with its SQL, is a file of
// its own in this folder (the same file names as ../sqlite/), run on the pool in db.ts.
// Each is one statement where it can be (a data-modifying CTE keeps a row change and
// its event atomic in one round trip) and a short transaction where it cannot. Hot
// statements are named, so each pooled connection plans them once.

import pg from 'pg';
import { LeashError } from '../../core/errors.ts';
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
  ClaimedTask,
  ClaimOptions,
  CreateTaskOptions,
  CreateTaskResult,
  EventWrite,
  LeaseRenewal,
  Message,
  MessagePatch,
  NewMessage,
  NewTask,
  NewThread,
  RecoverLostOptions,
  RemoteTypeRow,
  Store,
  Thread,
} from '../store.ts';
import { cancelQueued, markDetached, requestCancel } from './cancel.ts';
import { claimTasks } from './claim.ts';
import { createTask } from './create-task.ts';
import { PgDb } from './db.ts';
import { deleteTask, purgeEnded } from './delete-tasks.ts';
import { expireQueued } from './expire-queued.ts';
import { listEvents } from './list-events.ts';
import * as messages from './messages.ts';
import { migrate } from './migrations.ts';
import { PgNotifier } from './notifier.ts';
import { countByStatus, findActiveTaskIds, findCachedResult, getTask, listTasks } from './read-tasks.ts';
import { recoverLost } from './recover.ts';
import { renewLeases } from './renew-leases.ts';
import { listRemoteTypes, saveRemoteType } from './remote-types.ts';
import { saveCheckpoint } from './save-checkpoint.ts';
import * as threads from './threads.ts';
import { writeEvents } from './write-events.ts';

export interface PostgresStoreOptions {
  /** Connections in the pool (default 10). */
  poolMax?: number;
  /** Health check period of the LISTEN connection (ms, default 5000). */
  listenPingMs?: number;
  /** Connection trouble (never thrown): the pool and the LISTEN session recover by themselves. */
  onError?: (err: unknown, what: string) => void;
}

export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  readonly notifier: PgNotifier;
  /** The connection URL with any password removed (for logs). */
  readonly url: string;
  readonly #db: PgDb;

  private constructor(pool: pg.Pool, notifier: PgNotifier, url: string) {
    this.#db = new PgDb(pool);
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

  async migrate(): Promise<void> {
    const c = await this.#db.checkout();
    try {
      await migrate(c);
      c.done();
    } catch (e) {
      c.done(true);
      throw e;
    }
  }
  async close(): Promise<void> {
    await this.#db.close(() => this.notifier.close());
  }
  async ping(): Promise<void> {
    await this.#db.q('SELECT 1');
  }

  // ── tasks ────────────────────────────────────────────────────────────────
  createTask(t: NewTask, opts: CreateTaskOptions): Promise<CreateTaskResult> {
    return createTask(this.#db, t, opts);
  }
  getTask(id: string, owner?: string): Promise<Task | null> {
    return getTask(this.#db, id, owner);
  }
  listTasks(filter: ListTasksFilter): Promise<Page<Task>> {
    return listTasks(this.#db, filter);
  }
  findActiveTaskIds(filter: BatchCancelFilter): Promise<string[]> {
    return findActiveTaskIds(this.#db, filter);
  }
  countByStatus(): Promise<Record<TaskStatus, number>> {
    return countByStatus(this.#db);
  }
  findCachedResult(owner: string, type: string, inputHash: string, since: string): Promise<Task | null> {
    return findCachedResult(this.#db, owner, type, inputHash, since);
  }
  deleteTask(id: string, owner: string): Promise<1 | 0 | 'active'> {
    return deleteTask(this.#db, id, owner);
  }
  claimTasks(opts: ClaimOptions): Promise<ClaimedTask[]> {
    return claimTasks(this.#db, opts);
  }
  renewLeases(nodeId: string, leaseMs: number, now: string, held?: readonly string[]): Promise<LeaseRenewal> {
    return renewLeases(this.#db, nodeId, leaseMs, now, held);
  }
  writeEvents(writes: EventWrite[]): Promise<void> {
    return writeEvents(this.#db, writes);
  }
  listEvents(taskId: string, afterSeq: number, limit?: number): Promise<TaskEvent[]> {
    return listEvents(this.#db, taskId, afterSeq, limit);
  }
  saveCheckpoint(taskId: string, state: unknown): Promise<void> {
    return saveCheckpoint(this.#db, taskId, state);
  }
  cancelQueued(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    return cancelQueued(this.#db, id, reason, now);
  }
  expireQueued(now: string, limit?: number): Promise<Task[]> {
    return expireQueued(this.#db, now, limit);
  }
  markDetached(id: string): Promise<void> {
    return markDetached(this.#db, id);
  }
  requestCancel(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    return requestCancel(this.#db, id, reason, now);
  }
  recoverLost(opts: RecoverLostOptions): Promise<Task[]> {
    return recoverLost(this.#db, opts);
  }
  purgeEnded(endedBefore: string): Promise<number> {
    return purgeEnded(this.#db, endedBefore);
  }
  saveRemoteType(owner: string, type: string, schema: string | null, now: string): Promise<void> {
    return saveRemoteType(this.#db, owner, type, schema, now);
  }
  listRemoteTypes(): Promise<RemoteTypeRow[]> {
    return listRemoteTypes(this.#db);
  }

  // ── threads and messages ─────────────────────────────────────────────────
  createThread(t: NewThread): Promise<Thread> {
    return threads.createThread(this.#db, t);
  }
  getThread(id: string, owner?: string): Promise<Thread | null> {
    return threads.getThread(this.#db, id, owner);
  }
  listThreads(owner: string, limit: number, cursor?: string): Promise<Page<Thread>> {
    return threads.listThreads(this.#db, owner, limit, cursor);
  }
  deleteThread(id: string, owner: string): Promise<boolean> {
    return threads.deleteThread(this.#db, id, owner);
  }
  appendMessage(m: NewMessage): Promise<Message> {
    return messages.appendMessage(this.#db, m);
  }
  updateMessage(id: string, patch: MessagePatch): Promise<void> {
    return messages.updateMessage(this.#db, id, patch);
  }
  listMessages(threadId: string): Promise<Message[]> {
    return messages.listMessages(this.#db, threadId);
  }
  listRecentMessages(threadId: string, limit: number, beforeSeq?: number): Promise<Message[]> {
    return messages.listRecentMessages(this.#db, threadId, limit, beforeSeq);
  }
  countMessagesBefore(threadId: string, beforeSeq: number): Promise<number> {
    return messages.countMessagesBefore(this.#db, threadId, beforeSeq);
  }
  deleteMessagesOfTask(threadId: string, taskId: string): Promise<number> {
    return messages.deleteMessagesOfTask(this.#db, threadId, taskId);
  }
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
