// The task routes of SPEC §1. Every request is scoped to `request.owner`: another
// owner's task is answered exactly like a missing one (404), never with its data.
// Their schemas are core/wire/tasks.ts (shared with the WebSocket frames, the client
// and the OpenAPI document).

import type { StreamCaps } from '../stream-caps.ts';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LeashError } from '../../core/errors.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import type { CancelReason, Task, TaskEvent } from '../../core/types.ts';
import { idempotencyKeyField, idParams, MAX_IDEMPOTENCY_KEY } from '../../core/wire/fields.ts';
import {
  batchCancelBody,
  cancelTaskBody,
  createRequestOf,
  createTaskBody,
  createTaskQuery,
  DEFAULT_WAIT_S,
  eventsQuery,
  listTasksQuery,
  waitQuery,
} from '../../core/wire/tasks.ts';
import { parseOrThrow } from '../errors.ts';
import { AI_SDK_STREAM_HEADERS, aiSdkFrames } from '../ai-sdk-stream.ts';
import { cancelForDisconnect } from '../cancel-on-disconnect.ts';
import { carriedHeaders, resumeAfter, streamSse, writeFrames } from '../sse.ts';

export interface TaskRouteDeps {
  runtime: Runtime;
  /** SSE comment interval (15 s in production, shorter in tests). */
  keepaliveMs: number;
  /** Aborts when the server closes: long polls and streams end then. */
  closing: AbortSignal;
  /** Per-owner cap on open streams and long polls. */
  streams: StreamCaps;
}

function taskId(request: FastifyRequest): string {
  const r = idParams.safeParse(request.params);
  // An id that can't exist is simply not found (same answer as another owner's task).
  if (!r.success) throw new LeashError('not_found', 'Task not found');
  return r.data.id;
}

export function idempotencyKey(request: FastifyRequest): string | undefined {
  const h = request.headers['idempotency-key'];
  if (h === undefined) return undefined;
  const v = Array.isArray(h) ? h[0] : h;
  const bad = (message: string): LeashError =>
    new LeashError('invalid_request', `Invalid Idempotency-Key header: ${message}`, {
      details: [{ path: 'Idempotency-Key', message }],
    });
  if (Array.isArray(h) && h.length > 1) throw bad('send it once');
  if (v === undefined || v.trim() === '') throw bad('must not be empty');
  if (v.length > MAX_IDEMPOTENCY_KEY) throw bad(`at most ${MAX_IDEMPOTENCY_KEY} characters`);
  const r = idempotencyKeyField.safeParse(v);
  if (!r.success) throw bad(r.error.issues[0]?.message ?? 'invalid');
  return r.data;
}

const wantsEventStream = (accept: string | undefined): boolean =>
  accept !== undefined && accept.toLowerCase().includes('text/event-stream');

/**
 * Hijacks the reply and streams the task's events after `after` as SSE; when the
 * client goes away first and `onDisconnect` is `cancel`, cancels the task with
 * reason `disconnect`. The caller has checked that `request.owner` owns the task.
 */
export function streamTaskEvents(
  deps: TaskRouteDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  taskId: string,
  after: number,
  onDisconnect: 'cancel' | 'continue',
  headers: Record<string, string> = {},
): Promise<void> {
  deps.streams.holdForResponse(request, reply);
  reply.hijack();
  // Chained, not awaited: an open stream should hold as little as possible (no suspended frame).
  return streamSse(reply.raw, (signal): AsyncIterable<TaskEvent> => deps.runtime.events(taskId, { after, signal }), {
    keepaliveMs: deps.keepaliveMs,
    signal: deps.closing,
    headers: { ...carriedHeaders(reply), ...headers },
    onError: (err) => request.log.error({ err, task_id: taskId }, 'event stream failed'),
  }).then((end) =>
    end === 'client_gone' && onDisconnect === 'cancel'
      ? cancelForDisconnect(deps.runtime, request.owner, taskId, request.log)
      : undefined,
  );
}

/** streamTaskEvents in the AI SDK's UI message stream format (SPEC §7; see ai-sdk-stream.ts). */
function streamAiSdk(
  deps: TaskRouteDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  task: Task,
  after: number,
  onDisconnect: 'cancel' | 'continue',
): Promise<void> {
  deps.streams.holdForResponse(request, reply);
  reply.hijack();
  // The log is read from seq 1 whatever `after` is: the translator must know what is open.
  return writeFrames(
    reply.raw,
    (signal) => aiSdkFrames(deps.runtime.events(task.id, { after: 0, signal }), task, after),
    {
      keepaliveMs: deps.keepaliveMs,
      signal: deps.closing,
      headers: { ...carriedHeaders(reply), ...AI_SDK_STREAM_HEADERS, 'x-task-id': task.id },
      onError: (err) => request.log.error({ err, task_id: task.id }, 'event stream failed'),
    },
  ).then((end) =>
    end === 'client_gone' && onDisconnect === 'cancel'
      ? cancelForDisconnect(deps.runtime, request.owner, task.id, request.log)
      : undefined,
  );
}

export function registerTaskRoutes(app: FastifyInstance, deps: TaskRouteDeps): void {
  const { runtime } = deps;

  app.post('/api/tasks', async (request, reply) => {
    const body = parseOrThrow(createTaskBody, request.body, 'request body');
    const query = parseOrThrow(createTaskQuery, request.query, 'query');
    const key = idempotencyKey(request);
    const streamed = body.stream ?? query.stream ?? wantsEventStream(request.headers.accept);
    const onDisc = body.on_disconnect ?? query.on_disconnect ?? (streamed ? 'cancel' : 'continue');
    // Refused before the task exists: a stream over the cap must not leave work behind.
    if (streamed) deps.streams.holdForResponse(request, reply);

    const { task, created } = await runtime.create(request.owner, createRequestOf(body, key));
    const headers: Record<string, string> = { location: `/api/tasks/${task.id}`, 'x-task-id': task.id };
    // Same answer as the first time (Stripe-style), marked so a client can tell.
    if (!created) headers['idempotent-replayed'] = 'true';
    if (streamed) return streamTaskEvents(deps, request, reply, task.id, 0, onDisc, headers);
    return reply.code(202).headers(headers).send(task);
  });

  app.get('/api/tasks', async (request) => {
    const q = parseOrThrow(listTasksQuery, request.query, 'query');
    return runtime.list({
      owner: request.owner,
      ...(q.status !== undefined && { status: q.status }),
      ...(q.type !== undefined && { type: q.type }),
      ...(q.thread_id !== undefined && { thread_id: q.thread_id }),
      ...(q.limit !== undefined && { limit: q.limit }),
      ...(q.cursor !== undefined && { cursor: q.cursor }),
    });
  });

  // Static segment: registered explicitly so it is never read as `:id` (find-my-way
  // prefers static routes anyway; this keeps that visible).
  app.post('/api/tasks/cancel', async (request) => {
    const body = parseOrThrow(batchCancelBody, request.body ?? {}, 'request body');
    const reason: CancelReason = body.reason ?? 'batch';
    return runtime.cancelMany(
      {
        owner: request.owner,
        ...(body.status !== undefined && { status: body.status }),
        ...(body.type !== undefined && { type: body.type }),
        ...(body.thread_id !== undefined && { thread_id: body.thread_id }),
        ...(body.created_before !== undefined && { created_before: new Date(body.created_before).toISOString() }),
      },
      reason,
    );
  });

  app.get('/api/tasks/:id', async (request) => {
    const task = await runtime.get(taskId(request), request.owner);
    if (task === null) throw new LeashError('not_found', 'Task not found');
    return task;
  });

  app.post('/api/tasks/:id/cancel', async (request, reply) => {
    const id = taskId(request);
    const body = parseOrThrow(cancelTaskBody, request.body ?? {}, 'request body');
    const { task, alreadyCancelled } = await runtime.cancel(id, request.owner, body.reason ?? 'user');
    // 202 while the work is stopping; 200 once it has (or when it was already asked).
    return reply.code(alreadyCancelled || task.status === 'cancelled' ? 200 : 202).send(task);
  });

  app.get('/api/tasks/:id/events', async (request, reply) => {
    const id = taskId(request);
    const q = parseOrThrow(eventsQuery, request.query, 'query');
    const after = resumeAfter(request.headers['last-event-id'], q.after);
    if (after === null) {
      throw new LeashError('invalid_request', 'Invalid Last-Event-ID header: expected an event seq', {
        details: [{ path: 'Last-Event-ID', message: 'expected a non-negative integer' }],
      });
    }
    const task = await runtime.get(id, request.owner);
    if (task === null) throw new LeashError('not_found', 'Task not found');
    if (q.format === 'ai-sdk') return streamAiSdk(deps, request, reply, task, after, q.on_disconnect ?? 'continue');
    return streamTaskEvents(deps, request, reply, task.id, after, q.on_disconnect ?? 'continue');
  });

  app.get('/api/tasks/:id/wait', async (request, reply) => {
    const id = taskId(request);
    const q = parseOrThrow(waitQuery, request.query, 'query');
    const timeoutMs = Math.round((q.timeout_s ?? DEFAULT_WAIT_S) * 1000);
    deps.streams.holdForResponse(request, reply);
    // The response closing before it was written = the client went away: stop waiting.
    const gone = new AbortController();
    const onClose = (): void => {
      if (!reply.raw.writableFinished) gone.abort();
    };
    reply.raw.on('close', onClose);
    const signal = AbortSignal.any([gone.signal, deps.closing]);
    let task: Task | null;
    try {
      task = await runtime.wait(id, request.owner, timeoutMs, signal);
    } catch (err) {
      if (!signal.aborted) throw err;
      // Server closing (or client gone): answer with the task as it is now.
      task = await runtime.get(id, request.owner);
    } finally {
      reply.raw.off('close', onClose);
    }
    if (task === null) throw new LeashError('not_found', 'Task not found');
    return task;
  });

  app.delete('/api/tasks/:id', async (request, reply) => {
    await runtime.delete(taskId(request), request.owner);
    return reply.code(204).send();
  });
}
