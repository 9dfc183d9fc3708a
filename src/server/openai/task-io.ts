// Waiting for a task on behalf of an HTTP client, and stopping it when that client
// goes away: a dropped connection cancels the task with reason `disconnect` at
// once, so the model call upstream is aborted instead of running for nobody.

import type { FastifyReply, FastifyRequest } from 'fastify';
import { LeashError } from '../../runtime/errors.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import type { Task } from '../../runtime/types.ts';

/** The task may well have ended meanwhile; that is not an error. */
export async function cancelForDisconnect(runtime: Runtime, request: FastifyRequest, id: string): Promise<void> {
  try {
    await runtime.cancel(id, request.owner, 'disconnect');
  } catch (err) {
    if (!LeashError.is(err, 'task_ended') && !LeashError.is(err, 'not_found')) {
      request.log.warn({ err, task_id: id }, 'cancel on disconnect failed');
    }
  }
}

/** Longest a non-streamed request waits: past every built-in deadline (10 min). */
export const MAX_BLOCKING_WAIT_MS = 15 * 60_000;

/**
 * Waits until the task is terminal (or `timeoutMs`). When the client closes the
 * connection first, cancels the task (reason `disconnect`) and returns null.
 */
export async function waitForClient(
  runtime: Runtime,
  request: FastifyRequest,
  reply: FastifyReply,
  id: string,
  closing: AbortSignal,
  timeoutMs = MAX_BLOCKING_WAIT_MS,
): Promise<Task | null> {
  const gone = new AbortController();
  const onClose = (): void => {
    if (!reply.raw.writableFinished) gone.abort();
  };
  reply.raw.on('close', onClose);
  let task: Task | null;
  try {
    task = await runtime.wait(id, request.owner, timeoutMs, AbortSignal.any([gone.signal, closing]));
  } finally {
    reply.raw.off('close', onClose);
  }
  if (gone.signal.aborted) {
    await cancelForDisconnect(runtime, request, id);
    return null;
  }
  return task;
}
