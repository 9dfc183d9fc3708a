// The OpenAI-compatible surface (SPEC §4) under /v1, in its own Fastify context so
// that every error there — auth, body parsing, unknown routes included — has
// OpenAI's shape, which the official clients parse. Auth and limits are the
// server's: the same Bearer keys map to owners, and everything runs as tasks.

import type { FastifyInstance } from 'fastify';
import { LeashError } from '../../core/errors.ts';
import { Threads } from '../../threads/threads.ts';
import type { TaskRouteDeps } from '../routes/tasks.ts';
import { registerChatCompletionRoutes } from './chat-completions.ts';
import { sendOpenAiError } from './errors.ts';
import { registerModelRoutes } from './models.ts';
import { registerResponseRoutes } from './responses.ts';

export interface OpenAiRouteDeps extends TaskRouteDeps {
  /** Share the server's Threads so its per-thread run lock covers /v1/responses too. */
  threads?: Threads;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

export function registerOpenAiRoutes(app: FastifyInstance, deps: OpenAiRouteDeps): void {
  const threads = deps.threads ?? new Threads(deps.runtime);
  // `created` of the models: when this server started (they have no other date).
  const created = Math.floor(Date.now() / 1000);
  void app.register(
    async (v1) => {
      v1.setErrorHandler((err, request, reply) => sendOpenAiError(request, reply, err));
      v1.setNotFoundHandler((request, reply) => {
        const path = request.url.split('?', 1)[0] ?? '/';
        const allow = METHODS.filter((m) => m !== request.method && app.findRoute({ method: m, url: path }) !== null);
        if (allow.length > 0) {
          reply.header('allow', allow.join(', '));
          return sendOpenAiError(
            request,
            reply,
            new LeashError(
              'method_not_allowed',
              `Method ${request.method} is not allowed on ${path}; use ${allow.join(', ')}`,
            ),
          );
        }
        return sendOpenAiError(request, reply, new LeashError('not_found', `No route for ${request.method} ${path}`));
      });
      registerModelRoutes(v1, deps.runtime, created);
      registerChatCompletionRoutes(v1, deps);
      registerResponseRoutes(v1, { ...deps, threads });
    },
    { prefix: '/v1' },
  );
}
