// The embedded default Store: one SQLite file through node:sqlite (DatabaseSync).
// A short front: each operation, with its SQL, is a file of its own in this folder
// (the same file names as ../postgres/), run on the connection in db.ts. Every
// method runs synchronously inside its promise, so a thrown error is a rejection and
// within this process no two store operations interleave.

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
  Notifier,
  RecoverLostOptions,
  RemoteTypeRow,
  Store,
  Thread,
} from '../store.ts';
import { cancelQueued, markDetached, requestCancel } from './cancel.ts';
import { claimTasks } from './claim.ts';
import { createTask } from './create-task.ts';
import { SqliteDb } from './db.ts';
import { deleteTask, purgeEnded } from './delete-tasks.ts';
import { expireQueued } from './expire-queued.ts';
import { listEvents } from './list-events.ts';
import * as messages from './messages.ts';
import { LocalNotifier } from './notifier.ts';
import { countByStatus, findActiveTaskIds, findCachedResult, getTask, listTasks } from './read-tasks.ts';
import { recoverLost } from './recover.ts';
import { renewLeases } from './renew-leases.ts';
import { listRemoteTypes, saveRemoteType } from './remote-types.ts';
import { saveCheckpoint } from './save-checkpoint.ts';
import * as threads from './threads.ts';
import { writeEvents } from './write-events.ts';

export interface SqliteStoreOptions {
  /** Defaults to an in-process LocalNotifier. */
  notifier?: Notifier;
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly notifier: Notifier;
  readonly path: string;
  readonly #db: SqliteDb;

  private constructor(db: SqliteDb, path: string, notifier: Notifier) {
    this.#db = db;
    this.path = path;
    this.notifier = notifier;
  }

  /** Opens (creating if needed) the database file; `:memory:` for a private in-memory one. Call `migrate()` next. */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteStore {
    return new SqliteStore(SqliteDb.open(path), path, options.notifier ?? new LocalNotifier());
  }

  async migrate(): Promise<void> {
    this.#db.migrate();
  }
  async close(): Promise<void> {
    this.#db.close();
  }
  async ping(): Promise<void> {
    this.#db.q('SELECT 1').get();
  }

  /**
   * The query plan of every statement this store has prepared so far (diagnostics, and
   * the test that keeps hot statements on their indexes).
   */
  explainStatements(): Array<{ sql: string; plan: string[] }> {
    return this.#db.explainStatements();
  }

  // ── tasks ────────────────────────────────────────────────────────────────
  async createTask(t: NewTask, opts: CreateTaskOptions): Promise<CreateTaskResult> {
    return createTask(this.#db, t, opts);
  }
  async getTask(id: string, owner?: string): Promise<Task | null> {
    return getTask(this.#db, id, owner);
  }
  async listTasks(filter: ListTasksFilter): Promise<Page<Task>> {
    return listTasks(this.#db, filter);
  }
  async findActiveTaskIds(filter: BatchCancelFilter): Promise<string[]> {
    return findActiveTaskIds(this.#db, filter);
  }
  async countByStatus(): Promise<Record<TaskStatus, number>> {
    return countByStatus(this.#db);
  }
  async findCachedResult(owner: string, type: string, inputHash: string, since: string): Promise<Task | null> {
    return findCachedResult(this.#db, owner, type, inputHash, since);
  }
  async deleteTask(id: string, owner: string): Promise<1 | 0 | 'active'> {
    return deleteTask(this.#db, id, owner);
  }
  async claimTasks(opts: ClaimOptions): Promise<ClaimedTask[]> {
    return claimTasks(this.#db, opts);
  }
  async renewLeases(nodeId: string, leaseMs: number, now: string, held?: readonly string[]): Promise<LeaseRenewal> {
    return renewLeases(this.#db, nodeId, leaseMs, now, held);
  }
  async writeEvents(writes: EventWrite[]): Promise<void> {
    writeEvents(this.#db, writes);
  }
  async listEvents(taskId: string, afterSeq: number, limit?: number): Promise<TaskEvent[]> {
    return listEvents(this.#db, taskId, afterSeq, limit);
  }
  async saveCheckpoint(taskId: string, state: unknown): Promise<void> {
    saveCheckpoint(this.#db, taskId, state);
  }
  async cancelQueued(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    return cancelQueued(this.#db, id, reason, now);
  }
  async expireQueued(now: string, limit?: number): Promise<Task[]> {
    return expireQueued(this.#db, now, limit);
  }
  async markDetached(id: string): Promise<void> {
    markDetached(this.#db, id);
  }
  async requestCancel(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    return requestCancel(this.#db, id, reason, now);
  }
  async recoverLost(opts: RecoverLostOptions): Promise<Task[]> {
    return recoverLost(this.#db, opts);
  }
  async purgeEnded(endedBefore: string): Promise<number> {
    return purgeEnded(this.#db, endedBefore);
  }
  async saveRemoteType(owner: string, type: string, schema: string | null, now: string): Promise<void> {
    saveRemoteType(this.#db, owner, type, schema, now);
  }
  async listRemoteTypes(): Promise<RemoteTypeRow[]> {
    return listRemoteTypes(this.#db);
  }

  // ── threads and messages ─────────────────────────────────────────────────
  async createThread(t: NewThread): Promise<Thread> {
    return threads.createThread(this.#db, t);
  }
  async getThread(id: string, owner?: string): Promise<Thread | null> {
    return threads.getThread(this.#db, id, owner);
  }
  async listThreads(owner: string, limit: number, cursor?: string): Promise<Page<Thread>> {
    return threads.listThreads(this.#db, owner, limit, cursor);
  }
  async deleteThread(id: string, owner: string): Promise<boolean> {
    return threads.deleteThread(this.#db, id, owner);
  }
  async appendMessage(m: NewMessage): Promise<Message> {
    return messages.appendMessage(this.#db, m);
  }
  async updateMessage(id: string, patch: MessagePatch): Promise<void> {
    messages.updateMessage(this.#db, id, patch);
  }
  async listMessages(threadId: string): Promise<Message[]> {
    return messages.listMessages(this.#db, threadId);
  }
  async listRecentMessages(threadId: string, limit: number, beforeSeq?: number): Promise<Message[]> {
    return messages.listRecentMessages(this.#db, threadId, limit, beforeSeq);
  }
  async countMessagesBefore(threadId: string, beforeSeq: number): Promise<number> {
    return messages.countMessagesBefore(this.#db, threadId, beforeSeq);
  }
  async deleteMessagesOfTask(threadId: string, taskId: string): Promise<number> {
    return messages.deleteMessagesOfTask(this.#db, threadId, taskId);
  }
}
