// The client's view of the wire, all from src/core: the shapes the server sends
// (Task, events, Thread, Message) and, for what the client sends, the `z.input` of the
// very schemas the server parses with (type-only imports: zod is not bundled), so the
// SDK and the server cannot drift apart silently.

import type { z } from 'zod';
import type { TaskEventData } from '../core/types.ts';
import type { batchCancelBody, listTasksQuery, taskSpec } from '../core/wire/tasks.ts';
import type { createThreadBody, listThreadsQuery, threadRunSpec } from '../core/wire/threads.ts';
import type { wsTaskSpec } from '../core/wire/ws-frames.ts';
import type { batchCancelResultSchema, runResponseSchema, taskDetailSchema } from '../core/wire/shapes.ts';

export type {
  CancelReason,
  Message,
  MessageStatus,
  MultitaskStrategy,
  Page,
  Task,
  TaskEventData,
  TaskEventType,
  TaskStatus,
  Thread,
  WorkerInfo,
} from '../core/types.ts';

/** `GET /api/tasks/:id` also carries the task's latest progress messages. */
export type TaskDetail = z.output<typeof taskDetailSchema>;

/**
 * One event as it arrives on a stream: the SPEC §1 event (type + data) with its
 * task id and seq. SSE frames do not carry `created_at`; WebSocket frames may.
 */
export type TaskStreamEvent = TaskEventData & { task_id: string; seq: number; created_at?: string };

export {
  TERMINAL_STATUSES,
  TERMINAL_EVENT_TYPES as TERMINAL_EVENTS,
  isTerminal as isTerminalStatus,
} from '../core/types.ts';

/** Options every call takes. */
export interface RequestOptions {
  /** Aborting it rejects the call with the signal's reason and closes the connection. */
  signal?: AbortSignal;
  /** Extra headers for this call. */
  headers?: Record<string, string>;
}

/** `POST /api/tasks`'s body (`stream` and `on_disconnect` are the client's to set: see createAndStream). */
export type CreateTaskParams = z.input<typeof taskSpec>;

/** A task as a WebSocket `run` frame carries it: CreateTaskParams plus the idempotency key and on_disconnect. */
export type SocketTaskParams = z.input<typeof wsTaskSpec>;

export interface ReconnectOptions {
  /** Failed attempts in a row (no event received in between) before giving up. Default 10. */
  maxRetries?: number;
  /** First delay before reconnecting; doubles per failure. Default 200 ms. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

export interface CreateTaskOptions extends RequestOptions {
  /** Sent as `Idempotency-Key`: the same key returns the first task instead of a second one. */
  idempotencyKey?: string;
}

/** `GET /api/tasks`'s query (page size at most 200). */
export type ListTasksParams = z.input<typeof listTasksQuery>;

/** `POST /api/tasks/cancel`'s body: the caller's active tasks matching every given filter. */
export type CancelManyFilter = z.input<typeof batchCancelBody>;

export type CancelManyResult = z.output<typeof batchCancelResultSchema>;

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

export type CreateThreadParams = z.input<typeof createThreadBody>;

export type ListThreadsParams = z.input<typeof listThreadsQuery>;

/** `POST /api/threads/:id/runs`'s body; `multitask` says what to do with a run already active (default `interrupt`). */
export type RunParams = z.input<typeof threadRunSpec>;

/** `POST /api/threads/:id/runs`: the chat task plus the messages of the turn. */
export type RunResponse = z.output<typeof runResponseSchema>;

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
