// The task calls of SPEC §1, defined once: the HTTP routes parse with these, the
// WebSocket run frame is derived from the create body, the client's parameter types
// are their `z.input`, and the OpenAPI document is generated from them. Bodies are
// strict (an unknown field is a 400 naming it, so a typo such as `dealine_ms` is not
// silently ignored); query strings ignore unknown keys.

import { z } from 'zod';
import { CANCEL_REASONS, ISOLATIONS, TASK_STATUSES, type CreateTaskRequest } from '../types.ts';
import {
  boolQuery,
  deadlineMsField,
  listOf,
  onDisconnectField,
  pageQuery,
  taskTypeField,
  threadIdField,
} from './fields.ts';

export const MAX_WAIT_S = 300;
export const DEFAULT_WAIT_S = 30;

const statusList = listOf(z.enum(TASK_STATUSES));
const cancelReason = z.enum(CANCEL_REASONS);

/** What a task is: the part of a create request that every surface (HTTP, WebSocket) takes. */
export const taskSpec = z.strictObject({
  type: taskTypeField.describe('A task type the server (or a connected worker) serves'),
  input: z.unknown().optional().describe('The task type’s input (default `{}`)'),
  priority: z.number().int().min(-100).max(100).optional().describe('Higher runs first (default 0)'),
  deadline_ms: deadlineMsField.optional().describe('Cancelled with reason `deadline` this long after creation'),
  thread_id: threadIdField.nullable().optional(),
  isolation: z
    .enum(ISOLATIONS)
    .optional()
    .describe('Run inline, in a worker thread or in a child process, overriding the type’s choice'),
  grace_ms: z
    .number()
    .int()
    .min(0)
    .max(600_000)
    .optional()
    .describe('How long the handler may take to honour a cancel before it is killed or detached (ms)'),
});

/**
 * The runtime's create request for a task spec as a surface parsed it (HTTP body or
 * WebSocket frame): absent fields stay absent, the input defaults to `{}`.
 */
export function createRequestOf(spec: z.output<typeof taskSpec>, idempotencyKey?: string): CreateTaskRequest {
  return {
    type: spec.type,
    input: spec.input === undefined ? {} : spec.input,
    ...(spec.priority !== undefined && { priority: spec.priority }),
    ...(spec.deadline_ms !== undefined && { deadline_ms: spec.deadline_ms }),
    ...(spec.thread_id !== undefined && { thread_id: spec.thread_id }),
    ...(idempotencyKey !== undefined && { idempotency_key: idempotencyKey }),
    ...(spec.isolation !== undefined && { isolation: spec.isolation }),
    ...(spec.grace_ms !== undefined && { grace_ms: spec.grace_ms }),
  };
}

/** `POST /api/tasks` (the idempotency key comes as the `Idempotency-Key` header). */
export const createTaskBody = taskSpec.extend({
  stream: z.boolean().optional().describe('Answer with the event stream (SSE) at once'),
  on_disconnect: onDisconnectField
    .optional()
    .describe('`cancel` stops the task when the connection closes (default when streamed); `continue` otherwise'),
});
export const createTaskQuery = z.object({ stream: boolQuery.optional(), on_disconnect: onDisconnectField.optional() });

/** `GET /api/tasks`. */
export const listTasksQuery = z.object({
  status: statusList.optional(),
  type: taskTypeField.optional(),
  thread_id: threadIdField.optional(),
  ...pageQuery,
});

/** `POST /api/tasks/:id/cancel`. */
export const cancelTaskBody = z.strictObject({ reason: cancelReason.optional() });

/** `POST /api/tasks/cancel`: the caller's active tasks matching every given filter. */
export const batchCancelBody = z.strictObject({
  status: statusList.optional(),
  type: taskTypeField.optional(),
  thread_id: threadIdField.optional(),
  created_before: z.iso.datetime({ offset: true }).optional(),
  reason: cancelReason.optional(),
});

/** `GET /api/tasks/:id/wait`. */
export const waitQuery = z.object({
  timeout_s: z.coerce.number<number | string>().min(0).max(MAX_WAIT_S).optional(),
});

/** `GET /api/tasks/:id/events`. */
export const eventsQuery = z.object({
  after: z.coerce.number<number | string>().int().min(0).optional(),
  on_disconnect: onDisconnectField.optional(),
  format: z.enum(['leash', 'ai-sdk']).optional(),
});
