// Liveness and readiness. /healthz answers while the process serves at all;
// /readyz only when new work can be taken (store reachable, runtime accepting),
// so a load balancer drains a node that is shutting down or lost its database.

import type { FastifyInstance } from 'fastify';
import { LeashError } from '../core/errors.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { Store } from '../store/store.ts';

/** A store that does not answer within this is treated as down. */
const PING_TIMEOUT_MS = 2_000;

export function registerHealthRoutes(app: FastifyInstance, deps: { runtime: Runtime; store: Store }): void {
  app.get('/healthz', { config: { public: true } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { config: { public: true } }, async (request) => {
    if (!deps.runtime.accepting) throw new LeashError('not_ready', 'Not ready: shutting down');
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        deps.store.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`store ping timed out after ${PING_TIMEOUT_MS} ms`)),
            PING_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (err) {
      request.log.warn({ err }, 'readiness: store ping failed');
      throw new LeashError('not_ready', 'Not ready: the store does not answer');
    } finally {
      clearTimeout(timer);
    }
    return { status: 'ready', store: deps.store.kind };
  });
}
