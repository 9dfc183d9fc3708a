// Every /api route of the server, described for the OpenAPI document with the very
// schemas the routes parse with (src/core/wire). test/openapi.test.ts compares this
// table with the routes Fastify has, so a route added without an entry here fails.

import { z } from 'zod';
import { idParams } from '../../core/wire/fields.ts';
import {
  batchCancelResultSchema,
  messagePageSchema,
  modelListSchema,
  pageOf,
  runResponseSchema,
  taskDetailSchema,
  taskSchema,
  threadSchema,
  workerInfoSchema,
} from '../../core/wire/shapes.ts';
import {
  batchCancelBody,
  cancelTaskBody,
  createTaskBody,
  createTaskQuery,
  eventsQuery,
  listTasksQuery,
  waitQuery,
} from '../../core/wire/tasks.ts';
import { createThreadBody, listThreadsQuery, messagesQuery, threadRunBody } from '../../core/wire/threads.ts';

export type Method = 'get' | 'post' | 'delete';

export interface Answer {
  description: string;
  /** JSON body; absent for an answer without one. */
  schema?: z.ZodType;
  /** A body that is not JSON (an event stream). */
  contentType?: string;
}

export interface RouteDoc {
  method: Method;
  path: string;
  tag: 'tasks' | 'threads' | 'websocket' | 'workers' | 'models' | 'health';
  summary: string;
  description?: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** Request headers the route reads. */
  headers?: Array<{ name: string; description: string }>;
  /** Success answers by status; the error answers are added from `errors`. */
  answers: Record<number, Answer>;
  /** Error statuses this route answers besides 401/429/500, which every route may. */
  errors?: number[];
  /** Answers without a key. */
  public?: true;
}

const IDEMPOTENCY_KEY = {
  name: 'Idempotency-Key',
  description: 'The same key returns the first answer instead of doing the work twice (printable ASCII, ≤ 255).',
};
const LAST_EVENT_ID = { name: 'Last-Event-ID', description: 'Resume after this event seq (same as `?after=`).' };
const SSE: Answer = {
  description:
    'Server-sent events: `id: <seq>`, `event: <type>`, `data: <json>` (the event data plus task_id and seq); replays, then follows live events until the terminal one; a comment line every 15 s.',
  contentType: 'text/event-stream',
};
const streamed = 'With `stream: true` (or `Accept: text/event-stream`) the answer is the task’s event stream at once.';
const WS_UPGRADE = {
  101: { description: 'Switching protocols: the WebSocket is open.' },
  426: { description: 'A plain HTTP request: send a WebSocket upgrade.' },
};

export const ROUTES: RouteDoc[] = [
  // ── tasks (SPEC §1) ─────────────────────────────────────────────────────
  {
    method: 'post',
    path: '/api/tasks',
    tag: 'tasks',
    summary: 'Create a task',
    description: streamed,
    query: createTaskQuery,
    body: createTaskBody,
    headers: [IDEMPOTENCY_KEY],
    answers: {
      202: { description: 'The task, `queued` (or already `running`).', schema: taskSchema },
      200: SSE,
    },
    errors: [400, 409, 413],
  },
  {
    method: 'get',
    path: '/api/tasks',
    tag: 'tasks',
    summary: 'List tasks',
    query: listTasksQuery,
    answers: { 200: { description: 'A page of the caller’s tasks, newest first.', schema: pageOf(taskSchema) } },
    errors: [400],
  },
  {
    method: 'post',
    path: '/api/tasks/cancel',
    tag: 'tasks',
    summary: 'Cancel the caller’s active tasks matching a filter',
    body: batchCancelBody,
    answers: { 200: { description: 'How many were cancelled, and which.', schema: batchCancelResultSchema } },
    errors: [400],
  },
  {
    method: 'get',
    path: '/api/tasks/{id}',
    tag: 'tasks',
    summary: 'Get a task',
    params: idParams,
    answers: { 200: { description: 'The task with its recent progress messages.', schema: taskDetailSchema } },
    errors: [404],
  },
  {
    method: 'delete',
    path: '/api/tasks/{id}',
    tag: 'tasks',
    summary: 'Delete an ended task',
    params: idParams,
    answers: { 204: { description: 'Deleted.' } },
    errors: [404, 409],
  },
  {
    method: 'post',
    path: '/api/tasks/{id}/cancel',
    tag: 'tasks',
    summary: 'Cancel a task',
    description: 'Idempotent: a cancelled task answers 200; a completed or failed one 409 `task_ended`.',
    params: idParams,
    body: cancelTaskBody,
    answers: {
      202: { description: 'The task, `cancelling` while its work stops.', schema: taskSchema },
      200: { description: 'The task, already `cancelled`.', schema: taskSchema },
    },
    errors: [400, 404, 409],
  },
  {
    method: 'get',
    path: '/api/tasks/{id}/events',
    tag: 'tasks',
    summary: 'Follow a task’s events',
    description: 'With `format=ai-sdk`: the AI SDK’s UI message stream (SPEC §7).',
    params: idParams,
    query: eventsQuery,
    headers: [LAST_EVENT_ID],
    answers: { 200: SSE },
    errors: [400, 404],
  },
  {
    method: 'get',
    path: '/api/tasks/{id}/wait',
    tag: 'tasks',
    summary: 'Wait for a task to end',
    params: idParams,
    query: waitQuery,
    answers: { 200: { description: 'The task once it ended, or as it is at the timeout.', schema: taskDetailSchema } },
    errors: [400, 404],
  },
  // ── threads (SPEC §2) ───────────────────────────────────────────────────
  {
    method: 'post',
    path: '/api/threads',
    tag: 'threads',
    summary: 'Create a thread',
    body: createThreadBody,
    answers: { 201: { description: 'The thread.', schema: threadSchema } },
    errors: [400],
  },
  {
    method: 'get',
    path: '/api/threads',
    tag: 'threads',
    summary: 'List threads',
    query: listThreadsQuery,
    answers: { 200: { description: 'A page of the caller’s threads.', schema: pageOf(threadSchema) } },
    errors: [400],
  },
  {
    method: 'get',
    path: '/api/threads/{id}',
    tag: 'threads',
    summary: 'Get a thread',
    params: idParams,
    answers: { 200: { description: 'The thread.', schema: threadSchema } },
    errors: [404],
  },
  {
    method: 'delete',
    path: '/api/threads/{id}',
    tag: 'threads',
    summary: 'Delete a thread and its messages',
    params: idParams,
    answers: { 204: { description: 'Deleted.' } },
    errors: [404, 409],
  },
  {
    method: 'get',
    path: '/api/threads/{id}/messages',
    tag: 'threads',
    summary: 'A page of a thread’s messages',
    description: 'The newest page first, oldest → newest within it; `next_cursor` leads to older messages.',
    params: idParams,
    query: messagesQuery,
    answers: { 200: { description: 'The messages.', schema: messagePageSchema } },
    errors: [400, 404],
  },
  {
    method: 'post',
    path: '/api/threads/{id}/runs',
    tag: 'threads',
    summary: 'Send a message: start a `chat` run in the thread',
    description: `The user message is stored before the run starts. ${streamed}`,
    params: idParams,
    body: threadRunBody,
    headers: [IDEMPOTENCY_KEY],
    answers: {
      202: { description: 'The chat task and the turn’s message ids.', schema: runResponseSchema },
      200: SSE,
    },
    errors: [400, 404, 409, 413],
  },
  // ── the rest ────────────────────────────────────────────────────────────
  {
    method: 'get',
    path: '/api/ws',
    tag: 'websocket',
    summary: 'The WebSocket API (SPEC §3)',
    description:
      'Frames: `run` (a task, or a message in a thread: the same fields as the HTTP bodies), `cancel`, `interrupt`, `subscribe`, `unsubscribe`, `ping`; the server answers `ack`, `event`, `cancel_ack`, `error`, `pong`. A browser passes its key as the subprotocol `bearer.<key>` next to `leash.v1`, or as `?api_key=`.',
    answers: WS_UPGRADE,
    errors: [400, 403, 404],
  },
  {
    method: 'get',
    path: '/api/workers/connect',
    tag: 'workers',
    summary: 'Connect a remote worker (WebSocket, docs/workers.md)',
    answers: WS_UPGRADE,
    errors: [400, 403],
  },
  {
    method: 'get',
    path: '/api/workers',
    tag: 'workers',
    summary: 'The caller’s connected remote workers',
    answers: { 200: { description: 'The workers.', schema: z.object({ data: z.array(workerInfoSchema) }) } },
  },
  {
    method: 'get',
    path: '/api/models',
    tag: 'models',
    summary: 'The models a request may name, and the default one',
    answers: { 200: { description: 'The models.', schema: modelListSchema } },
  },
  {
    method: 'get',
    path: '/healthz',
    tag: 'health',
    summary: 'Liveness',
    answers: { 200: { description: 'The process serves.', schema: z.object({ status: z.literal('ok') }) } },
    public: true,
  },
  {
    method: 'get',
    path: '/readyz',
    tag: 'health',
    summary: 'Readiness: the store answers and new work is taken',
    answers: {
      200: { description: 'Ready.', schema: z.object({ status: z.literal('ready'), store: z.string() }) },
    },
    errors: [503],
    public: true,
  },
];
