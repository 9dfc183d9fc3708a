// Threads (SPEC §2): conversations whose runs are `chat` tasks. Another owner's
// thread answers 404, exactly like a missing one. Schemas: core/wire/threads.ts.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LeashError } from '../../core/errors.ts';
import { idParams } from '../../core/wire/fields.ts';
import {
  createThreadBody,
  listThreadsQuery,
  messagesQuery,
  threadRunBody,
  threadRunOf,
} from '../../core/wire/threads.ts';
import type { Threads } from '../../threads/threads.ts';
import { parseOrThrow } from '../errors.ts';
import { idempotencyKey, streamTaskEvents, type TaskRouteDeps } from './tasks.ts';
import { RunKeys } from './run-keys.ts';

export interface ThreadRouteDeps extends TaskRouteDeps {
  threads: Threads;
}

function threadId(request: FastifyRequest): string {
  const r = idParams.safeParse(request.params);
  if (!r.success) throw new LeashError('not_found', 'Thread not found');
  return r.data.id;
}

export function registerThreadRoutes(app: FastifyInstance, deps: ThreadRouteDeps): void {
  const { threads } = deps;
  const runKeys = new RunKeys();

  app.post('/api/threads', async (request, reply) => {
    const body = parseOrThrow(createThreadBody, request.body ?? {}, 'request body');
    const thread = await threads.create(request.owner, body.metadata ?? {});
    return reply.code(201).header('location', `/api/threads/${thread.id}`).send(thread);
  });

  app.get('/api/threads', async (request) => {
    const q = parseOrThrow(listThreadsQuery, request.query, 'query');
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
    const body = parseOrThrow(threadRunBody, request.body, 'request body');
    const accept = request.headers.accept ?? '';
    const streamed = body.stream ?? accept.toLowerCase().includes('text/event-stream');
    // Refused before the run exists: a stream over the cap must not leave work behind.
    const key = idempotencyKey(request);
    if (streamed) deps.streams.holdForResponse(request, reply);
    const start = () => threads.run(id, request.owner, threadRunOf(body));
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
