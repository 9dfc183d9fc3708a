// Waiting for a task on behalf of an HTTP client, and stopping it when that client
// goes away: a dropped connection cancels the task with reason `disconnect` at
// once, so the model call upstream is aborted instead of running for nobody.

import type { FastifyReply, FastifyRequest } from 'fastify';
import { cancelForDisconnect } from '../cancel-on-disconnect.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import type { Task } from '../../core/types.ts';

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
    await cancelForDisconnect(runtime, request.owner, id, request.log);
    return null;
  }
  return task;
}
