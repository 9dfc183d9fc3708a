// What the server answers with, as zod schemas: the OpenAPI document is generated
// from them. The TypeScript interfaces in ../types.ts stay what the code uses; each
// schema here is checked at compile time to describe exactly its interface (the
// `same` lines below), so the document cannot drift from what is really sent.

import { z } from 'zod';
import {
  CANCEL_REASONS,
  MESSAGE_ROLES,
  MESSAGE_STATUSES,
  TASK_STATUSES,
  type Message,
  type Page,
  type Task,
  type TaskEvent,
  type Thread,
  type WorkerInfo,
} from '../types.ts';

const iso = z.string().describe('ISO 8601 UTC time');
const cancelReason = z.enum(CANCEL_REASONS);

export const taskErrorSchema = z
  .object({ code: z.string(), message: z.string(), details: z.unknown().optional() })
  .meta({ id: 'TaskError' });

export const taskSchema = z
  .object({
    id: z.string().describe('`task_` + random'),
    type: z.string(),
    status: z.enum(TASK_STATUSES),
    progress: z.number().nullable().describe('0–100, or null before any progress'),
    progress_message: z.string().nullable(),
    input: z.unknown(),
    result: z.unknown(),
    output_text: z.string().describe('Streamed text so far, kept on cancel'),
    error: taskErrorSchema.nullable(),
    cancel: z
      .object({
        reason: cancelReason,
        requested_at: iso,
        detached: z.literal(true).optional().describe('The inline handler ignored its signal past its grace'),
      })
      .meta({ id: 'CancelInfo' })
      .nullable(),
    priority: z.number().int(),
    thread_id: z.string().nullable(),
    owner: z.string(),
    created_at: iso,
    started_at: iso.nullable(),
    ended_at: iso.nullable(),
    deadline_at: iso.nullable(),
  })
  .meta({ id: 'Task' });

export const taskDetailSchema = taskSchema
  .extend({
    recent_progress: z
      .array(z.object({ progress: z.number().nullable(), message: z.string().nullable(), at: iso }))
      .optional(),
  })
  .meta({ id: 'TaskDetail' });

const eventBase = { task_id: z.string(), seq: z.number().int().min(1), created_at: iso };
const lastDurable = z.number().int().optional();
export const taskEventSchema = z
  .discriminatedUnion('type', [
    z.object({ ...eventBase, type: z.literal('task.queued'), data: z.object({ last_durable_seq: lastDurable }) }),
    z.object({ ...eventBase, type: z.literal('task.started'), data: z.object({ attempt: z.number().optional() }) }),
    z.object({
      ...eventBase,
      type: z.literal('task.progress'),
      data: z.object({ progress: z.number().nullable(), message: z.string().nullable() }),
    }),
    z.object({ ...eventBase, type: z.literal('output.delta'), data: z.object({ text: z.string() }) }),
    z.object({ ...eventBase, type: z.literal('task.cancelling'), data: z.object({ reason: cancelReason }) }),
    z.object({ ...eventBase, type: z.literal('task.completed'), data: z.object({ result: z.unknown() }) }),
    z.object({
      ...eventBase,
      type: z.literal('task.failed'),
      data: z.object({ error: taskErrorSchema, last_durable_seq: lastDurable }),
    }),
    z.object({
      ...eventBase,
      type: z.literal('task.cancelled'),
      data: z.object({
        reason: cancelReason,
        output_text: z.string(),
        detached: z.literal(true).optional(),
        last_durable_seq: lastDurable,
      }),
    }),
  ])
  .meta({ id: 'TaskEvent' });

export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({ data: z.array(item), next_cursor: z.string().nullable() });

export const batchCancelResultSchema = z.object({ cancelled: z.number().int(), ids: z.array(z.string()) });

export const threadSchema = z
  .object({
    id: z.string(),
    owner: z.string(),
    status: z.enum(['idle', 'busy']).describe('`busy` while a run of the thread is queued, running or cancelling'),
    created_at: iso,
    metadata: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'Thread' });

export const messageSchema = z
  .object({
    id: z.string(),
    thread_id: z.string(),
    seq: z.number().int(),
    role: z.enum(MESSAGE_ROLES),
    content: z.string(),
    status: z.enum(MESSAGE_STATUSES),
    task_id: z.string().nullable(),
    created_at: iso,
    usage: z.object({ input_tokens: z.number(), output_tokens: z.number() }).nullable(),
  })
  .meta({ id: 'Message' });

export const messagePageSchema = pageOf(messageSchema).extend({ has_more: z.boolean() });

/** `POST /api/threads/:id/runs`: the chat task plus the messages of the turn. */
export const runResponseSchema = taskSchema
  .extend({
    user_message_id: z.string(),
    assistant_message_id: z.string(),
    cancelled_task_ids: z.array(z.string()),
  })
  .meta({ id: 'RunResponse' });

export const workerInfoSchema = z
  .object({
    id: z.string(),
    owner: z.string(),
    connected: z.boolean(),
    connected_at: iso,
    last_seen_at: iso,
    sdk: z.string().nullable(),
    types: z.array(z.string()),
    slots: z.number().int(),
    running: z.array(
      z.object({ attempt: z.string(), task_id: z.string(), accepted: z.boolean(), cancelling: z.boolean() }),
    ),
  })
  .meta({ id: 'WorkerInfo' });

export const modelListSchema = z.object({
  default: z.string(),
  data: z.array(z.object({ id: z.string(), provider: z.string(), description: z.string() })),
});

/** Every error of /api: `details` names each bad field of a 400 `invalid_request`. */
export const errorBodySchema = z
  .object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }) })
  .meta({ id: 'Error' });

// ── compile-time: each schema describes exactly its interface ────────────────
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <_T extends true>(): void => undefined;
same<Same<z.output<typeof taskSchema>, Task>>();
same<Same<z.output<typeof taskEventSchema>, TaskEvent>>();
same<Same<z.output<typeof threadSchema>, Thread>>();
same<Same<z.output<typeof messageSchema>, Message>>();
same<Same<z.output<typeof workerInfoSchema>, WorkerInfo>>();
same<Same<z.output<ReturnType<typeof pageOf<typeof taskSchema>>>, Page<Task>>>();
