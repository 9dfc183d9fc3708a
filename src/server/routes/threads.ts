// Threads (SPEC §2): conversations whose runs are `chat` tasks. Another owner's
// thread answers 404, exactly like a missing one.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { LeashError } from '../../core/errors.ts';
import { MAX_MESSAGE_PAGE, MULTITASK_STRATEGIES, type Threads } from '../../threads/threads.ts';
import { parseOrThrow } from '../errors.ts';
import { deadlineMsField, onDisconnectField, pageQuery } from '../schemas.ts';
import { idempotencyKey, streamTaskEvents, type TaskRouteDeps } from './tasks.ts';
import { RunKeys } from './run-keys.ts';

export interface ThreadRouteDeps extends TaskRouteDeps {
  threads: Threads;
}

const idParams = z.object({ id: z.string().min(1).max(128) });
const createBody = z.strictObject({ metadata: z.record(z.string(), z.unknown()).optional() });
const listQuery = z.object(pageQuery);
const messagesQuery = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_MESSAGE_PAGE).optional(),
  cursor: pageQuery.cursor,
});
export const MAX_MESSAGE_CHARS = 1_000_000;
const runBody = z.strictObject({
  content: z.string().min(1, 'must not be empty').max(MAX_MESSAGE_CHARS),
  model: z.string().min(1).max(200).optional(),
  multitask: z.enum(MULTITASK_STRATEGIES).optional(),
  system: z.string().max(100_000).optional(),
  deadline_ms: deadlineMsField.optional(),
  max_tokens: z.number().int().positive().max(1_000_000).optional(),
  temperature: z.number().min(0).max(2).optional(),
  stream: z.boolean().optional(),
  on_disconnect: onDisconnectField.optional(),
});

function threadId(request: FastifyRequest): string {
  const r = idParams.safeParse(request.params);
  if (!r.success) throw new LeashError('not_found', 'Thread not found');
  return r.data.id;
}

export function registerThreadRoutes(app: FastifyInstance, deps: ThreadRouteDeps): void {
  const { threads } = deps;
  const runKeys = new RunKeys();

  app.post('/api/threads', async (request, reply) => {
    const body = parseOrThrow(createBody, request.body ?? {}, 'request body');
    const thread = await threads.create(request.owner, body.metadata ?? {});
    return reply.code(201).header('location', `/api/threads/${thread.id}`).send(thread);
  });

  app.get('/api/threads', async (request) => {
    const q = parseOrThrow(listQuery, request.query, 'query');
    return threads.list(request.owner, q.limit ?? 50, q.cursor);
  });

  app.get('/api/threads/:id', async (request) => {
    const thread = await threads.get(threadId(request), request.owner);
    if (!thread) throw new LeashError('not_found', 'Thread not found');
    return thread;
  });

  app.delete('/api/threads/:id', async (request, reply) => {
    await threads.delete(threadId(request), request.owner);
    return reply.code(204).send();
  });

  // Newest page first (a chat view's first screen), oldest → newest within it;
  // `next_cursor` leads to older messages.
  app.get('/api/threads/:id/messages', async (request) => {
    const id = threadId(request);
    const q = parseOrThrow(messagesQuery, request.query, 'query');
    return threads.messagesPage(id, request.owner, q.limit, q.cursor);
  });

  app.post('/api/threads/:id/runs', async (request, reply) => {
    const id = threadId(request);
    const body = parseOrThrow(runBody, request.body, 'request body');
    const accept = request.headers.accept ?? '';
    const streamed = body.stream ?? accept.toLowerCase().includes('text/event-stream');
    // Refused before the run exists: a stream over the cap must not leave work behind.
    const key = idempotencyKey(request);
    if (streamed) deps.streams.holdForResponse(request, reply);
    const start = () =>
      threads.run(id, request.owner, {
        content: body.content,
        ...(body.model !== undefined && { model: body.model }),
        ...(body.multitask !== undefined && { multitask: body.multitask }),
        ...(body.system !== undefined && { system: body.system }),
        ...(body.deadline_ms !== undefined && { deadline_ms: body.deadline_ms }),
        ...(body.max_tokens !== undefined && { max_tokens: body.max_tokens }),
        ...(body.temperature !== undefined && { temperature: body.temperature }),
      });
    const { run, created } =
      key === undefined ? { run: await start(), created: true } : await runKeys.once(request.owner, id, key, start);
    const headers: Record<string, string> = { location: `/api/tasks/${run.task.id}`, 'x-task-id': run.task.id };
    if (!created) headers['idempotent-replayed'] = 'true';
    if (streamed) {
      return streamTaskEvents(deps, request, reply, run.task.id, 0, body.on_disconnect ?? 'cancel', headers);
    }
    return reply
      .code(202)
      .headers(headers)
      .send({
        ...run.task,
        user_message_id: run.user_message.id,
        assistant_message_id: run.assistant_message.id,
        cancelled_task_ids: run.cancelled_task_ids,
      });
  });
}
