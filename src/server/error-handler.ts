// The one error handler of the server. Every error, thrown by a route, a hook (auth,
// limits) or the router (404, 405), is answered here in the format of the surface it
// was sent to, chosen by route prefix: OpenAI's `{error: {message, type, param, code}}`
// under /v1, which the official clients parse into typed errors, and leash's
// `{error: {code, message, details?}}` everywhere else. Both start from the same
// mapping (errors.ts), so what is hidden (internals, stack traces) is the same.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LeashError } from '../core/errors.ts';
import { toErrorResponse } from './errors.ts';
import { toOpenAiError } from './openai/errors.ts';

export type ErrorFormat = 'leash' | 'openai';

const OPENAI_PREFIX = '/v1';

/** The path the router matched on: the route's pattern, or for an unmatched request its decoded path. */
function routedPath(request: FastifyRequest): string {
  if (!request.is404 && request.routeOptions.url !== undefined) return request.routeOptions.url;
  const raw = request.url.split('?', 1)[0] ?? '/';
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

export function errorFormatOf(request: FastifyRequest): ErrorFormat {
  const path = routedPath(request);
  return path === OPENAI_PREFIX || path.startsWith(`${OPENAI_PREFIX}/`) ? 'openai' : 'leash';
}

/** Answers `err` in the request's format; a stream that already started is just ended. */
export function sendError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const { status, body, internal } = errorFormatOf(request) === 'openai' ? toOpenAiError(err) : toErrorResponse(err);
  if (internal)
    request.log.error({ err }, 'unexpected error'); // the request logger carries reqId
  else if (status >= 500) request.log.warn({ code: body.error.code }, body.error.message);
  // A stream that already started can't carry a JSON error; just end it.
  if (reply.sent || reply.raw.headersSent) {
    if (!reply.raw.writableEnded) reply.raw.end();
    return reply;
  }
  if (status === 401) reply.header('www-authenticate', 'Bearer');
  if (status === 429) {
    const retry = retryAfterOf(err);
    if (retry !== undefined) reply.header('retry-after', String(retry));
  }
  return reply.code(status).type('application/json; charset=utf-8').send(body);
}

/** `details.retry_after_s` of a rate-limit error, as its Retry-After header. */
function retryAfterOf(err: unknown): number | undefined {
  if (!(err instanceof LeashError)) return undefined;
  const retry = (err.details as { retry_after_s?: unknown } | undefined)?.retry_after_s;
  return typeof retry === 'number' ? retry : undefined;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** Installs the error handler and the 404 / 405 handler on the root instance (child contexts inherit them). */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));

  // Fastify answers 404 for a known path with another method; say 405 and list the methods.
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '/';
    const allow = METHODS.filter((m) => m !== request.method && app.findRoute({ method: m, url: path }) !== null);
    if (allow.length > 0) {
      reply.header('allow', allow.join(', '));
      return sendError(
        request,
        reply,
        new LeashError(
          'method_not_allowed',
          `Method ${request.method} is not allowed on ${path}; use ${allow.join(', ')}`,
        ),
      );
    }
    return sendError(request, reply, new LeashError('not_found', `No route for ${request.method} ${path}`));
  });
}
