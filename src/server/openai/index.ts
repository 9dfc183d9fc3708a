// The OpenAI-compatible surface (SPEC §4) under /v1. Every error there — auth, body
// parsing, unknown routes included — has OpenAI's shape, which the official clients
// parse: the server's one error handler (error-handler.ts) picks it by the /v1 prefix.
// Auth and limits are the server's: the same Bearer keys map to owners, and
// everything runs as tasks.

import type { FastifyInstance } from 'fastify';
import { Threads } from '../../threads/threads.ts';
import type { TaskRouteDeps } from '../routes/tasks.ts';
import { registerChatCompletionRoutes } from './chat-completions.ts';
import { registerModelRoutes } from './models.ts';
import { registerResponseRoutes } from './responses.ts';

export interface OpenAiRouteDeps extends TaskRouteDeps {
  /** Share the server's Threads so its per-thread run lock covers /v1/responses too. */
  threads?: Threads;
}

export function registerOpenAiRoutes(app: FastifyInstance, deps: OpenAiRouteDeps): void {
  const threads = deps.threads ?? new Threads(deps.runtime);
  // `created` of the models: when this server started (they have no other date).
  const created = Math.floor(Date.now() / 1000);
  void app.register(
    async (v1) => {
      registerModelRoutes(v1, deps.runtime, created);
      registerChatCompletionRoutes(v1, deps);
      registerResponseRoutes(v1, { ...deps, threads });
    },
    { prefix: '/v1' },
  );
}
