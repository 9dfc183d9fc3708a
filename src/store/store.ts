// The persistence seam. SQLite (embedded default) and PostgreSQL (several nodes)
// implement this interface side by side, and both run test/store.conformance.ts.
// Each is laid out by operation (as graphile-worker's src/sql/): sqlite/claim.ts and
// postgres/claim.ts hold the claim's SQL and the function that runs it, and so on for
// every operation under the same file names; sqlite-store.ts and postgres-store.ts are
// short fronts wiring them to this interface. What is not SQL is shared, written once:
// rows.ts (row mapping), paging.ts, task-filters.ts, patches.ts, lease.ts.
//
// Ownership rule for the event log: while a task is running, the node running it
// is the only writer of its events and assigns `seq` itself (write-behind batches
// via `writeEvents`). Every other event write (queued, cancelled-while-queued,
// node_lost, recovery) is done by the store atomically with `last_seq + 1`, except
// recovery after a lost node, which writes at `last_seq + SEQ_AHEAD + 1` (below).

/**
 * How far past its last *committed* seq a running node may hand a task's events out
 * to readers (events beyond wait in memory, unseen, until a commit moves the window).
 * Write-behind means a node can deliver seqs that a crash then loses; recovery
 * (node_lost, resume, cancelled) writes its event above `last_seq + SEQ_AHEAD`, so a
 * seq anyone was ever given never names a different event. Never lower it: a node
 * of an older version may have handed seqs out up to its own bound.
 */
export const SEQ_AHEAD = 1024;

import type { Isolation } from '../core/types.ts';
import type {
  CancelReason,
  Task,
  TaskError,
  TaskEvent,
  TaskStatus,
  ListTasksFilter,
  Page,
  BatchCancelFilter,
} from '../core/types.ts';

export interface NewTask {
  id: string;
  type: string;
  owner: string;
  input: unknown;
  /** Stable hash of (type, input) for the per-type result cache. */
  input_hash: string;
  priority: number;
  thread_id: string | null;
  deadline_at: string | null;
  created_at: string;
  idempotency_key: string | null;
  /** Per-task overrides of how it runs (isolation, grace); null = the type's defaults. */
  options: TaskRunOptions | null;
}

export interface TaskRunOptions {
  isolation?: Isolation;
  grace_ms?: number;
}

/** A task this node just claimed, with what it needs to run it. */
export interface ClaimedTask {
  task: Task;
  lastSeq: number;
  checkpoint: unknown;
  options: TaskRunOptions | null;
}

export interface CreateTaskOptions {
  /** Reject with `queue_full` when the owner already has this many queued tasks. */
  maxQueuedPerOwner: number;
  /**
   * Eager start (as Temporal's eager workflow start): the calling node has a free slot,
   * so the task is claimed for it in the create's own transaction — `task.queued` and
   * `task.started` in one commit — when a claim would take it next anyway: it has no
   * thread, nothing is queued at its priority or above, and its owner is under the
   * running limit (checked as exactly as a claim checks it; when that cannot be told
   * at once, e.g. another node is claiming for the owner, the task is just queued).
   */
  startOn?: Omit<ClaimOptions, 'max'>;
}

export type CreateTaskResult =
  /** `started`: claimed for `startOn`'s node (the task is `running`). */
  | { kind: 'created'; task: Task; started?: ClaimedTask }
  /** Same owner + Idempotency-Key seen before: the earlier task, unchanged. */
  | { kind: 'existing'; task: Task }
  | { kind: 'queue_full'; queued: number };

export interface ClaimOptions {
  nodeId: string;
  /** At most this many tasks claimed in this call. */
  max: number;
  /** Tasks of one owner running (or cancelling) at once, across every node. */
  maxRunningPerOwner: number;
  leaseMs: number;
  now: string;
  /**
   * Task types served by remote workers: a queued task of one of `types` is claimed
   * only when its owner and type are in `allow` (a worker here can take it); the
   * others stay queued. Absent: every type is claimable.
   */
  remote?: { types: string[]; allow: Array<{ owner: string; type: string }> };
}

/** Fields of the task row a running node updates together with its events. */
export interface TaskPatch {
  status?: TaskStatus;
  progress?: number | null;
  progress_message?: string | null;
  /** Appended to output_text (never replaces it). */
  append_output?: string;
  result?: unknown;
  error?: TaskError | null;
  cancel?: { reason: CancelReason; requested_at: string } | null;
  ended_at?: string | null;
}

export interface LeaseRenewal {
  cancelling: Array<{ id: string; reason: CancelReason }>;
  lost: string[];
}

export interface EventWrite {
  event: TaskEvent;
  patch?: TaskPatch;
}

/**
 * A task type an owner's remote workers declared, with its input JSON Schema's text (or
 * null). Owner '' is a declaration stored before owners were recorded (known, so its
 * queued tasks are not taken for an unknown type, but nobody's until declared again).
 */
export interface RemoteTypeRow {
  owner: string;
  type: string;
  schema: string | null;
}

// The wire shapes of threads live in core (the client reads them too).
export type { Message, MessageRole, MessageStatus, Thread } from '../core/types.ts';
import type { Message, MessageRole, MessageStatus, Thread } from '../core/types.ts';

/** The fields of a thread its creator chooses (`createThread`). */
export interface NewThread {
  id: string;
  owner: string;
  created_at: string;
  metadata: Record<string, unknown>;
}

/** What `updateMessage` changes: `content` replaces, `append` adds after it. */
export interface MessagePatch {
  content?: string;
  append?: string;
  status?: MessageStatus;
  usage?: Message['usage'];
}

/** Which lost tasks `recoverLost` ends: one node's, or those of any node whose lease ended. */
export interface RecoverLostOptions {
  nodeId?: string;
  expiredBefore?: string;
  resumableTypes: string[];
  now: string;
}

export interface NewMessage {
  id: string;
  thread_id: string;
  role: MessageRole;
  content: string;
  status: MessageStatus;
  task_id: string | null;
  created_at: string;
}

/**
 * Cross-node signalling. SQLite: an in-process emitter. PostgreSQL: LISTEN/NOTIFY.
 * Payloads are small strings (task ids, `id:seq`); the data itself is read from the store.
 */
export type Channel = 'wakeup' | 'cancel' | 'events' | 'types';

export interface Notifier {
  publish(channel: Channel, payload: string): Promise<void>;
  /** Returns the unsubscribe function. */
  subscribe(channel: Channel, listener: (payload: string) => void): () => void;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  readonly notifier: Notifier;

  /** Applies numbered migrations; safe to call on every start. */
  migrate(): Promise<void>;
  close(): Promise<void>;
  /** Cheap round trip for /readyz. */
  ping(): Promise<void>;

  // ── tasks ────────────────────────────────────────────────────────────────
  /**
   * Inserts the task (status queued, last_seq 1) and its `task.queued` event atomically;
   * with `startOn`, possibly already running (last_seq 2, `task.started` too).
   */
  createTask(task: NewTask, opts: CreateTaskOptions): Promise<CreateTaskResult>;
  /** `owner` given: another owner's task is `null` (the API answers 404, never its data). */
  getTask(id: string, owner?: string): Promise<Task | null>;
  listTasks(filter: ListTasksFilter): Promise<Page<Task>>;
  /** Ids of the owner's tasks matching the filter whose status is not terminal. */
  findActiveTaskIds(filter: BatchCancelFilter): Promise<string[]>;
  countByStatus(): Promise<Record<TaskStatus, number>>;
  /** A completed task of the same owner, type and input hash created at or after `since`. */
  findCachedResult(owner: string, type: string, inputHash: string, since: string): Promise<Task | null>;
  /** 1 = deleted; 0 = no such task; 'active' = refused because not terminal. */
  deleteTask(id: string, owner: string): Promise<1 | 0 | 'active'>;

  /**
   * Moves up to `max` queued tasks to `running` on `nodeId` in priority order
   * (priority desc, then creation order), honouring per-owner running limits and
   * thread order (a thread's tasks run one at a time, oldest first). Appends
   * `task.started` for each. Returns the claimed tasks with `last_seq`.
   */
  claimTasks(opts: ClaimOptions): Promise<ClaimedTask[]>;
  /**
   * Extends the lease of the tasks in `held` (what the node thinks it runs) that the
   * store has running or cancelling on this node, and reports what the node must act
   * on: those the store says are `cancelling` (the backstop for a missed cancel
   * notification) and those of `held` it no longer holds (recovered by another node
   * after its lease ran out). A task of this node that is not in `held` — a claim or
   * eager create whose answer never reached it, e.g. the connection died after the
   * commit — is not renewed: its lease runs out and `recoverLost` ends or requeues it.
   */
  renewLeases(nodeId: string, leaseMs: number, now: string, held?: readonly string[]): Promise<LeaseRenewal>;

  /**
   * Appends events (with their row patches) in one transaction. Seq is the caller's.
   * A seq already taken, or one not above the task's `last_seq` (the log has moved on
   * past a gap: another node recovered the task), rejects the whole batch with
   * `event_conflict` and a task whose
   * row is gone with `not_found`, each with `details.task_id` naming the task: seq is
   * the fencing token, so a node that lost a task (another node recovered it and
   * wrote the next seq) learns it here.
   */
  writeEvents(writes: EventWrite[]): Promise<void>;
  listEvents(taskId: string, afterSeq: number, limit?: number): Promise<TaskEvent[]>;
  saveCheckpoint(taskId: string, state: unknown): Promise<void>;

  /** queued → cancelled with a `task.cancelled` event, atomically. Null when the task was not queued. */
  cancelQueued(id: string, reason: CancelReason, now: string): Promise<Task | null>;
  /**
   * The reaper: queued tasks whose deadline has passed (`deadline_at <= now`, at most
   * `limit`) end `cancelled` with reason `deadline` and a `task.cancelled` event,
   * atomically; returns them. Claims never start such a task either.
   */
  expireQueued(now: string, limit?: number): Promise<Task[]>;
  /** Records `cancel.detached: true` on a task whose inline handler was left running past its grace. */
  markDetached(id: string): Promise<void>;
  /**
   * Records a stop request for a task running on some node: status → cancelling,
   * cancel info set. The running node writes the `task.cancelling` event. Null when
   * the task was not running.
   */
  requestCancel(id: string, reason: CancelReason, now: string): Promise<Task | null>;

  /**
   * Ends tasks whose node is gone: every running/cancelling task of `nodeId` (or,
   * with `expiredBefore`, of any node whose lease ended before it). Cancelling
   * ones end `cancelled`; ones whose type is in `resumableTypes` go back to
   * `queued` (checkpoint kept); the rest end `failed` with code `node_lost`.
   * The event is written at `last_seq + SEQ_AHEAD + 1` (the lost node may have
   * delivered seqs up to `last_seq + SEQ_AHEAD` that never reached the store) and its
   * data carries `last_durable_seq`: the last seq stored before the loss.
   */
  recoverLost(opts: RecoverLostOptions): Promise<Task[]>;

  /** Deletes tasks (and their events) that ended before `endedBefore`. Returns how many. */
  purgeEnded(endedBefore: string): Promise<number>;

  // ── remote-worker types (docs/workers.md) ─────────────────────────────────
  /**
   * Records a task type an owner's remote worker declared (on any node: every node reads
   * them, so that owner's create of it works on each). `schema`: its input JSON Schema as
   * JSON text; null keeps the one stored. Types are per owner: another owner's
   * declaration of the same name is its own row.
   */
  saveRemoteType(owner: string, type: string, schema: string | null, now: string): Promise<void>;
  listRemoteTypes(): Promise<RemoteTypeRow[]>;

  // ── threads and messages ─────────────────────────────────────────────────
  createThread(t: NewThread): Promise<Thread>;
  getThread(id: string, owner?: string): Promise<Thread | null>;
  listThreads(owner: string, limit: number, cursor?: string): Promise<Page<Thread>>;
  deleteThread(id: string, owner: string): Promise<boolean>;
  /** Assigns the next per-thread seq atomically. */
  appendMessage(m: NewMessage): Promise<Message>;
  updateMessage(id: string, patch: MessagePatch): Promise<void>;
  listMessages(threadId: string): Promise<Message[]>;
  /**
   * The last `limit` messages with `seq < beforeSeq` (all when omitted), in
   * conversation order: a page of a long thread without reading all of it.
   */
  listRecentMessages(threadId: string, limit: number, beforeSeq?: number): Promise<Message[]>;
  /** How many messages of the thread have `seq < beforeSeq`. */
  countMessagesBefore(threadId: string, beforeSeq: number): Promise<number>;
  /** Deletes every message of the thread bound to `taskId` or sent as its input (rollback). */
  deleteMessagesOfTask(threadId: string, taskId: string): Promise<number>;
}
