// The frames of the WebSocket API (SPEC §3), derived from the HTTP schemas so the two
// surfaces take the same fields: a `run` frame's task is the body of POST /api/tasks
// (its Idempotency-Key header becoming the `idempotency_key` field), a thread `run`
// frame is the body of POST /api/threads/:id/runs plus the thread's id.

import { z } from 'zod';
import { CANCEL_REASONS, type TaskEventData, type TaskStatus } from '../types.ts';
import { idempotencyKeyField, onDisconnectField, taskIdField, threadIdField } from './fields.ts';
import { taskSpec } from './tasks.ts';
import { threadRunSpec } from './threads.ts';

export const requestIdField = z.union([
  z.string().min(1).max(128),
  z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
]);
export type RequestId = z.output<typeof requestIdField>;

/** A `run` frame's task: what POST /api/tasks takes, with the idempotency key as a field. */
export const wsTaskSpec = taskSpec.extend({
  idempotency_key: idempotencyKeyField.optional(),
  on_disconnect: onDisconnectField.optional(),
});

export const runTaskFrame = z.strictObject({
  type: z.literal('run'),
  request_id: requestIdField,
  task: wsTaskSpec,
  on_disconnect: onDisconnectField.optional(),
});

export const runThreadFrame = threadRunSpec.extend({
  type: z.literal('run'),
  request_id: requestIdField,
  thread_id: threadIdField,
  on_disconnect: onDisconnectField.optional(),
});

// By task_id, or by the request_id of a run of this socket (SPEC §3): sent right after
// the run, before its ack, it stops that run.
export const cancelFrame = z
  .strictObject({
    type: z.literal('cancel'),
    request_id: requestIdField.optional(),
    task_id: taskIdField.optional(),
    reason: z.enum(CANCEL_REASONS).optional(),
  })
  .refine((f) => f.task_id !== undefined || f.request_id !== undefined, {
    message: 'give task_id, or the request_id of a run of this socket',
  });

export const interruptFrame = z
  .strictObject({
    type: z.literal('interrupt'),
    request_id: requestIdField.optional(),
    task_id: taskIdField.optional(),
    thread_id: threadIdField.optional(),
  })
  .refine((f) => (f.task_id === undefined) !== (f.thread_id === undefined), {
    message: 'give exactly one of task_id or thread_id',
  });

export const subscribeFrame = z.strictObject({
  type: z.literal('subscribe'),
  request_id: requestIdField.optional(),
  task_id: taskIdField,
  after: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});

export const unsubscribeFrame = z.strictObject({
  type: z.literal('unsubscribe'),
  request_id: requestIdField.optional(),
  task_id: taskIdField,
});

// Loose on purpose: clients often put a timestamp in their pings.
export const pingFrame = z.object({ type: z.literal('ping'), request_id: requestIdField.optional() });

export const CLIENT_FRAME_TYPES = ['run', 'cancel', 'interrupt', 'subscribe', 'unsubscribe', 'ping'] as const;
export type ClientFrameType = (typeof CLIENT_FRAME_TYPES)[number];

// ── server → client (built by the server, so typed rather than parsed) ──────
export interface AckFrame {
  type: 'ack';
  request_id: RequestId;
  task_id: string;
  /** Thread runs: the turn's thread and message ids, and the runs it cancelled. */
  thread_id?: string;
  user_message_id?: string;
  assistant_message_id?: string;
  cancelled_task_ids?: string[];
}
/** One event of a followed task (SPEC §1's event: `event` is its type). */
export interface EventFrame {
  type: 'event';
  task_id: string;
  seq: number;
  event: TaskEventData['type'];
  data: TaskEventData['data'];
}
export interface CancelAckFrame {
  type: 'cancel_ack';
  request_id?: RequestId;
  /** Interrupting an idle thread: task_id and status are null. */
  task_id: string | null;
  thread_id?: string;
  status: TaskStatus | null;
}
export interface ErrorFrame {
  type: 'error';
  request_id?: RequestId;
  task_id?: string;
  error: { code: string; message: string; details?: unknown };
}
export interface PongFrame {
  type: 'pong';
  request_id?: RequestId;
}
export type ServerFrame = AckFrame | EventFrame | CancelAckFrame | ErrorFrame | PongFrame;
