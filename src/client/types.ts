// The client's view of the wire. Task, event and message shapes come from the
// server's own type modules (type-only imports: nothing of the server is bundled),
// so the SDK and the server cannot drift apart silently.

import type {
  BatchCancelFilter,
  CancelReason,
  Page,
  Task,
  TaskEventData,
  TaskEventType,
  TaskStatus,
} from '../core/types.ts';
import type { Message, MessageStatus, Thread } from '../store/store.ts';
import type { WorkerInfo } from '../server/workers/protocol.ts';

export type {
  CancelReason,
  Message,
  MessageStatus,
  Page,
  Task,
  TaskEventData,
  TaskEventType,
  TaskStatus,
  Thread,
  WorkerInfo,
};

/** `GET /api/tasks/:id` also carries the task's latest progress messages. */
export interface TaskDetail extends Task {
  recent_progress?: Array<{ progress: number | null; message: string | null; at: string }>;
}

/**
 * One event as it arrives on a stream: the SPEC §1 event (type + data) with its
 * task id and seq. SSE frames do not carry `created_at`; WebSocket frames may.
 */
export type TaskStreamEvent = TaskEventData & { task_id: string; seq: number; created_at?: string };

export const TERMINAL_STATUSES: ReadonlySet<TaskStatus> = new Set(['completed', 'failed', 'cancelled']);
export const TERMINAL_EVENTS: ReadonlySet<TaskEventType> = new Set(['task.completed', 'task.failed', 'task.cancelled']);
export const isTerminalStatus = (s: TaskStatus): boolean => TERMINAL_STATUSES.has(s);

/** Options every call takes. */
export interface RequestOptions {
  /** Aborting it rejects the call with the signal's reason and closes the connection. */
  signal?: AbortSignal;
  /** Extra headers for this call. */
  headers?: Record<string, string>;
}

export interface CreateTaskParams {
  type: string;
  input?: unknown;
  priority?: number;
  deadline_ms?: number;
  thread_id?: string | null;
}

export interface CreateTaskOptions extends RequestOptions {
  /** Sent as `Idempotency-Key`: the same key returns the first task instead of a second one. */
  idempotencyKey?: string;
}

export interface ListTasksParams {
  status?: TaskStatus | TaskStatus[];
  type?: string;
  thread_id?: string;
  /** Page size (server maximum 200). */
  limit?: number;
  cursor?: string;
}

export type CancelManyFilter = Omit<BatchCancelFilter, 'owner'> & { reason?: CancelReason };

export interface CancelManyResult {
  cancelled: number;
  ids: string[];
}

export interface WaitOptions extends RequestOptions {
  /**
   * Give up after this long and return the task as it is then. Default: wait
   * until it ends (long polls of at most `pollSeconds` each, repeated).
   */
  timeoutMs?: number;
  /** Length of one long poll in seconds (default 30, server maximum 300). */
  pollSeconds?: number;
}

export interface EventsOptions extends RequestOptions {
  /** Start after this seq (0 = from the beginning, the default). */
  after?: number;
  /** Reconnect on a dropped connection and resume after the last seq seen (default true). */
  reconnect?: boolean;
  /** `cancel`: the server cancels the task if this connection goes away. Default `continue`. */
  onDisconnect?: 'cancel' | 'continue';
}

export interface CreateThreadParams {
  metadata?: Record<string, unknown>;
}

export interface ListThreadsParams {
  limit?: number;
  cursor?: string;
}

export type MultitaskStrategy = 'interrupt' | 'enqueue' | 'reject' | 'rollback';

export interface RunParams {
  content: string;
  model?: string;
  /** What to do with a run already active in the thread (default `interrupt`). */
  multitask?: MultitaskStrategy;
  system?: string;
  deadline_ms?: number;
}

/** `POST /api/threads/:id/runs`: the chat task plus the messages of the turn. */
export interface RunResponse extends Task {
  user_message_id: string;
  assistant_message_id: string;
  cancelled_task_ids: string[];
}

export interface ModelInfo {
  id: string;
  object?: string;
  owned_by?: string;
  [key: string]: unknown;
}

export interface HealthResponse {
  status: string;
  [key: string]: unknown;
}
