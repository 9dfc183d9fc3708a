// Every error leaves the server as `{error: {code, message, details?}}` with the
// status of its code. Fastify's own errors (body parsing, limits) are mapped to
// leash codes; anything unexpected is a 500 `internal_error` whose cause is only
// logged, never sent (no stack traces, no internals in responses). This is the
// mapping every surface starts from (/v1 reshapes it, see openai/errors.ts); the one
// handler that sends it is error-handler.ts.

import type { FastifyError } from 'fastify';
import type { z } from 'zod';
import { httpStatusOf } from '../core/error-codes.ts';
import { LeashError } from '../core/errors.ts';

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export interface FieldIssue {
  path: string;
  message: string;
}

/** zod issues as `[{path, message}]`, path dotted (`input.prompt`, `status.1`); the root is `''`. */
export function zodDetails(error: z.ZodError): FieldIssue[] {
  return error.issues.flatMap((i) => {
    const base = i.path.map(String);
    // zod reports unknown keys on the parent object; name each key instead.
    if (i.code === 'unrecognized_keys') {
      return i.keys.map((k) => ({ path: [...base, k].join('.'), message: 'Unknown field' }));
    }
    return [{ path: base.join('.'), message: i.message }];
  });
}

/** Parses with a zod schema or throws 400 `invalid_request` whose details name each bad field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const details = zodDetails(r.error);
  const first = details[0];
  const where =
    first === undefined ? '' : first.path === '' ? `: ${first.message}` : `: ${first.path}: ${first.message}`;
  throw new LeashError('invalid_request', `Invalid ${what}${where}`, { details });
}

/** Fastify error codes → leash codes. Their messages are fixed strings, safe to pass on. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_BAD_URL: 'invalid_request',
  // A path parameter longer than any id can be names nothing that exists.
  FST_ERR_MAX_PARAM_LENGTH: 'not_found',
  FST_ERR_ASYNC_CONSTRAINT: 'invalid_request',
  FST_ERR_VALIDATION: 'invalid_request',
};

/** Generic codes for other 4xx errors Fastify may raise. */
const BY_STATUS: Record<number, string> = {
  400: 'invalid_request',
  401: 'unauthorized',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
};

const MESSAGES: Record<string, string> = {
  payload_too_large: 'Request body is too large',
  not_found: 'Not found',
  invalid_json: 'Request body is not valid JSON',
  unsupported_media_type: 'Unsupported Content-Type: send application/json',
};

const STORE_UNAVAILABLE = 'The task store is unavailable right now; try again shortly.';

/** Turns any thrown value into (status, body); `internal` = unexpected, to be logged as an error. */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody; internal: boolean } {
  if (err instanceof LeashError) {
    // The database is down or restarting: the client may retry. Its message can name
    // a host or a path, so a fixed one is sent instead.
    if (err.code === 'store_unavailable') {
      return { status: 503, body: { error: { code: err.code, message: STORE_UNAVAILABLE } }, internal: false };
    }
    const status = httpStatusOf(err.code);
    // A LeashError with an unmapped code is still a server-side fault; don't leak its text.
    if (status >= 500 && err.code !== 'shutting_down' && err.code !== 'not_ready') {
      return {
        status: 500,
        body: { error: { code: 'internal_error', message: 'Internal server error' } },
        internal: true,
      };
    }
    return { status, body: { error: err.toJSON() }, internal: false };
  }
  const fe = err as Partial<FastifyError> | null;
  const fcode = typeof fe?.code === 'string' ? FASTIFY_CODES[fe.code] : undefined;
  if (fcode !== undefined) {
    const message = MESSAGES[fcode] ?? (typeof fe?.message === 'string' ? fe.message : fcode);
    return { status: httpStatusOf(fcode), body: { error: { code: fcode, message } }, internal: false };
  }
  const sc = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (sc >= 400 && sc < 500) {
    const code = BY_STATUS[sc] ?? 'invalid_request';
    return { status: sc, body: { error: { code, message: MESSAGES[code] ?? 'Bad request' } }, internal: false };
  }
  return { status: 500, body: { error: { code: 'internal_error', message: 'Internal server error' } }, internal: true };
}
