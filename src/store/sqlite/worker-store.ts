// The SQLite store on a thread of its own. node:sqlite is synchronous: on the event
// loop's thread every write (a write-behind batch of a thousand streams' deltas is
// tens of milliseconds) holds up every socket. Here the same SqliteStore runs in a
// worker and this class forwards each call to it. Calls run there one at a time in
// the order they were made, so the store behaves as it does in-thread: a read sees
// every write called before it. The notifier stays on this thread (it is this
// process's in-memory pub/sub; the store never publishes itself).

import { Worker } from 'node:worker_threads';
import type {
  BatchCancelFilter,
  CancelReason,
  ListTasksFilter,
  Page,
  Task,
  TaskEvent,
  TaskStatus,
} from '../../core/types.ts';
import { LeashError } from '../../core/errors.ts';
import type {
  ClaimOptions,
  ClaimedTask,
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
  Thread,
} from '../store.ts';
import { LocalNotifier } from './notifier.ts';
import type { SqliteStore } from './sqlite-store.ts';
import type { FromStoreWorker, ToStoreWorker, WorkerError } from './worker-entry.ts';

type Method = Exclude<keyof SqliteStore, 'kind' | 'notifier' | 'path'>;

export class SqliteWorkerStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly notifier: Notifier;
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  #next = 1;
  #dead: Error | null = null;

  private constructor(worker: Worker, notifier: Notifier) {
    this.#worker = worker;
    this.notifier = notifier;
    worker.on('message', (m: FromStoreWorker) => {
      if (m.type !== 'result') return;
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (this.#pending.size === 0) worker.unref();
      if (m.ok) p.resolve(m.value);
      else p.reject(revive(m.error));
    });
    const fail = (err: Error): void => {
      this.#dead ??= err;
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new LeashError('store_unavailable', `the SQLite thread exited (${code})`)));
  }

  /** Opens `path` (a file or `:memory:`) on a new thread; rejects as SqliteStore.open would. */
  static async open(path: string, options: { notifier?: Notifier } = {}): Promise<SqliteWorkerStore> {
    // `.js` once built into dist/ (the installed package), `.ts` when run from source.
    const entry = `./worker-entry${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`;
    const worker = new Worker(new URL(entry, import.meta.url), { workerData: { path }, execArgv: [] });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromStoreWorker): void => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'open-failed') reject(revive(m.error));
        else return;
        worker.off('message', onMessage);
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    worker.unref(); // an idle store does not keep the process up, as with an in-thread database
    return new SqliteWorkerStore(worker, options.notifier ?? new LocalNotifier());
  }

  #call<T>(method: Method, ...args: unknown[]): Promise<T> {
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise<T>((resolve, reject) => {
      const id = this.#next++;
      // Referenced while a call is under way (an awaited call keeps the process up), not while idle.
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#worker.postMessage({ type: 'call', id, method, args } satisfies ToStoreWorker);
    });
  }

  migrate(): Promise<void> {
    return this.#call('migrate');
  }
  async close(): Promise<void> {
    if (this.#dead) return;
    try {
      await this.#call('close');
    } finally {
      this.#dead ??= new LeashError('store_closed', 'the SQLite store is closed');
      await this.#worker.terminate();
    }
  }
  ping(): Promise<void> {
    return this.#call('ping');
  }
  createTask(task: NewTask, opts: CreateTaskOptions): Promise<CreateTaskResult> {
    return this.#call('createTask', task, opts);
  }
  getTask(id: string, owner?: string): Promise<Task | null> {
    return this.#call('getTask', id, owner);
  }
  listTasks(filter: ListTasksFilter): Promise<Page<Task>> {
    return this.#call('listTasks', filter);
  }
  findActiveTaskIds(filter: BatchCancelFilter): Promise<string[]> {
    return this.#call('findActiveTaskIds', filter);
  }
  countByStatus(): Promise<Record<TaskStatus, number>> {
    return this.#call('countByStatus');
  }
  findCachedResult(owner: string, type: string, inputHash: string, since: string): Promise<Task | null> {
    return this.#call('findCachedResult', owner, type, inputHash, since);
  }
  deleteTask(id: string, owner: string): Promise<1 | 0 | 'active'> {
    return this.#call('deleteTask', id, owner);
  }
  claimTasks(opts: ClaimOptions): Promise<ClaimedTask[]> {
    return this.#call('claimTasks', opts);
  }
  renewLeases(nodeId: string, leaseMs: number, now: string, held?: readonly string[]): Promise<LeaseRenewal> {
    return this.#call('renewLeases', nodeId, leaseMs, now, held);
  }
  writeEvents(writes: EventWrite[]): Promise<void> {
    return this.#call('writeEvents', writes);
  }
  listEvents(taskId: string, afterSeq: number, limit?: number): Promise<TaskEvent[]> {
    return this.#call('listEvents', taskId, afterSeq, limit);
  }
  saveCheckpoint(taskId: string, state: unknown): Promise<void> {
    return this.#call('saveCheckpoint', taskId, state);
  }
  cancelQueued(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    return this.#call('cancelQueued', id, reason, now);
  }
  expireQueued(now: string, limit?: number): Promise<Task[]> {
    return this.#call('expireQueued', now, limit);
  }
  markDetached(id: string): Promise<void> {
    return this.#call('markDetached', id);
  }
  requestCancel(id: string, reason: CancelReason, now: string): Promise<Task | null> {
    return this.#call('requestCancel', id, reason, now);
  }
  recoverLost(opts: {
    nodeId?: string;
    expiredBefore?: string;
    resumableTypes: string[];
    now: string;
  }): Promise<Task[]> {
    return this.#call('recoverLost', opts);
  }
  purgeEnded(endedBefore: string): Promise<number> {
    return this.#call('purgeEnded', endedBefore);
  }
  createThread(t: {
    id: string;
    owner: string;
    created_at: string;
    metadata: Record<string, unknown>;
  }): Promise<Thread> {
    return this.#call('createThread', t);
  }
  getThread(id: string, owner?: string): Promise<Thread | null> {
    return this.#call('getThread', id, owner);
  }
  listThreads(owner: string, limit: number, cursor?: string): Promise<Page<Thread>> {
    return this.#call('listThreads', owner, limit, cursor);
  }
  deleteThread(id: string, owner: string): Promise<boolean> {
    return this.#call('deleteThread', id, owner);
  }
  appendMessage(m: NewMessage): Promise<Message> {
    return this.#call('appendMessage', m);
  }
  updateMessage(
    id: string,
    patch: { content?: string; append?: string; status?: MessageStatus; usage?: Message['usage'] },
  ): Promise<void> {
    return this.#call('updateMessage', id, patch);
  }
  listMessages(threadId: string): Promise<Message[]> {
    return this.#call('listMessages', threadId);
  }
  listRecentMessages(threadId: string, limit: number, beforeSeq?: number): Promise<Message[]> {
    return this.#call('listRecentMessages', threadId, limit, beforeSeq);
  }
  countMessagesBefore(threadId: string, beforeSeq: number): Promise<number> {
    return this.#call('countMessagesBefore', threadId, beforeSeq);
  }
  deleteMessagesOfTask(threadId: string, taskId: string): Promise<number> {
    return this.#call('deleteMessagesOfTask', threadId, taskId);
  }
}

/** An error from the worker, as the caller would have got it in-thread (LeashErrors keep code and details). */
export function revive(e: WorkerError): Error {
  if (e.leash) return LeashError.fromJSON({ code: e.code!, message: e.message, details: e.details });
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code !== undefined) (err as { code?: string }).code = e.code;
  return err;
}
