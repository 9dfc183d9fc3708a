// The wire shapes of SPEC.md §1. Everything that leaves the server is one of these.

export const TASK_STATUSES = ['queued', 'running', 'cancelling', 'completed', 'failed', 'cancelled'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<TaskStatus> = new Set(['completed', 'failed', 'cancelled']);
export const isTerminal = (s: TaskStatus): boolean => TERMINAL_STATUSES.has(s);

export const CANCEL_REASONS = [
  'user',
  'interrupted',
  'rollback',
  'disconnect',
  'deadline',
  'shutdown',
  'batch',
] as const;
export type CancelReason = (typeof CANCEL_REASONS)[number];

/** Where a handler runs: in the server's thread, a worker thread or a child process. */
export const ISOLATIONS = ['inline', 'worker', 'process'] as const;
export type Isolation = (typeof ISOLATIONS)[number];

export interface TaskError {
  code: string;
  message: string;
  details?: unknown;
}

export interface CancelInfo {
  reason: CancelReason;
  requested_at: string;
  /** The inline handler ignored its signal past its grace: the task ended, its handler was left running. */
  detached?: true;
}

export interface Task {
  id: string;
  type: string;
  status: TaskStatus;
  progress: number | null;
  progress_message: string | null;
  input: unknown;
  result: unknown;
  output_text: string;
  error: TaskError | null;
  cancel: CancelInfo | null;
  priority: number;
  thread_id: string | null;
  owner: string;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  deadline_at: string | null;
}

/** Stream parts are a union keyed on `type` (as in the AI SDK). */
export type TaskEventData =
  // last_durable_seq: on events recovery writes after a lost node (see Store.recoverLost).
  | { type: 'task.queued'; data: { last_durable_seq?: number } }
  | { type: 'task.started'; data: { attempt?: number } }
  | { type: 'task.progress'; data: { progress: number | null; message: string | null } }
  | { type: 'output.delta'; data: { text: string } }
  | { type: 'task.cancelling'; data: { reason: CancelReason } }
  | { type: 'task.completed'; data: { result: unknown } }
  | { type: 'task.failed'; data: { error: TaskError; last_durable_seq?: number } }
  | {
      type: 'task.cancelled';
      data: { reason: CancelReason; output_text: string; detached?: true; last_durable_seq?: number };
    };

export type TaskEventType = TaskEventData['type'];

export type TaskEvent = TaskEventData & {
  task_id: string;
  seq: number;
  created_at: string;
};

export const TERMINAL_EVENT_TYPES: ReadonlySet<TaskEventType> = new Set([
  'task.completed',
  'task.failed',
  'task.cancelled',
]);
export const isTerminalEvent = (e: { type: TaskEventType }): boolean => TERMINAL_EVENT_TYPES.has(e.type);

/** What a caller asks for when creating a task (validated at the edge). */
export interface CreateTaskRequest {
  /** Internal callers (threads) pick the id up front to bind messages to it; never taken from HTTP. */
  id?: string;
  type: string;
  input: unknown;
  priority?: number;
  deadline_ms?: number;
  thread_id?: string | null;
  idempotency_key?: string;
  /** Run this task inline, in a worker thread or in a child process, overriding its type's choice. */
  isolation?: Isolation;
  /** How long an isolated handler may take to honour a cancel before it is killed (ms). */
  grace_ms?: number;
}

export interface ListTasksFilter {
  owner: string;
  status?: TaskStatus[];
  type?: string;
  thread_id?: string;
  limit?: number;
  cursor?: string;
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export interface BatchCancelFilter {
  owner: string;
  status?: TaskStatus[];
  type?: string;
  thread_id?: string;
  created_before?: string;
}

/** A conversation (SPEC §2). */
export interface Thread {
  id: string;
  owner: string;
  /** Derived: `busy` while any task bound to the thread is queued, running or cancelling. */
  status: 'idle' | 'busy';
  created_at: string;
  metadata: Record<string, unknown>;
}

export const MESSAGE_ROLES = ['system', 'user', 'assistant'] as const;
export type MessageRole = (typeof MESSAGE_ROLES)[number];
export const MESSAGE_STATUSES = ['complete', 'streaming', 'cancelled', 'failed'] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

export interface Message {
  id: string;
  thread_id: string;
  /** 1, 2, 3 … per thread, assigned by the store; order of the conversation. */
  seq: number;
  role: MessageRole;
  content: string;
  status: MessageStatus;
  task_id: string | null;
  created_at: string;
  usage: { input_tokens: number; output_tokens: number } | null;
}

/** What a thread run does with a run already active in its thread (SPEC §2). */
export const MULTITASK_STRATEGIES = ['interrupt', 'enqueue', 'reject', 'rollback'] as const;
export type MultitaskStrategy = (typeof MULTITASK_STRATEGIES)[number];

/** A remote worker as `GET /api/workers` lists it. */
export interface WorkerInfo {
  id: string;
  owner: string;
  connected: boolean;
  connected_at: string;
  last_seen_at: string;
  sdk: string | null;
  types: string[];
  slots: number;
  running: Array<{ attempt: string; task_id: string; accepted: boolean; cancelling: boolean }>;
}

let isoMs = NaN;
let isoText = '';
/** The time now as ISO 8601. Cached per millisecond: a stream stamps thousands of events a second. */
export const nowIso = (): string => {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
};
