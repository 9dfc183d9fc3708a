// A client that asked for `on_disconnect: "cancel"` went away: its task is cancelled
// with reason `disconnect`. The one helper every stream uses (task events, thread runs,
// the OpenAI surface, WebSocket sockets). The task may well have ended meanwhile: quiet
// then (the cancel path and its callers: src/runtime/cancel.ts).

import type { FastifyBaseLogger } from 'fastify';
import type { Runtime } from '../runtime/runtime.ts';

export async function cancelForDisconnect(
  runtime: Runtime,
  owner: string,
  id: string,
  log: FastifyBaseLogger,
): Promise<void> {
  try {
    await runtime.cancel(id, owner, 'disconnect', { quietIfEnded: true });
  } catch (err) {
    log.warn({ err, task_id: id }, 'cancel on disconnect failed');
  }
}
