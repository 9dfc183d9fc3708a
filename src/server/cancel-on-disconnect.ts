// A client that asked for `on_disconnect: "cancel"` went away: its task is cancelled
// with reason `disconnect`. The one helper every stream uses (task events, thread runs,
// the OpenAI surface, WebSocket sockets). The task may well have ended meanwhile.

import type { FastifyBaseLogger } from 'fastify';
import type { Runtime } from '../runtime/runtime.ts';

export async function cancelForDisconnect(
  runtime: Runtime,
  owner: string,
  id: string,
  log: FastifyBaseLogger,
): Promise<void> {
  try {
    await runtime.cancelIfActive(id, owner, 'disconnect');
  } catch (err) {
    log.warn({ err, task_id: id }, 'cancel on disconnect failed');
  }
}
