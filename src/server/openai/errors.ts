// Errors on /v1/* in OpenAI's shape, `{error: {message, type, param, code}}`, which
// the official clients parse into typed errors (BadRequestError, NotFoundError, …).
// `code` keeps leash's code (e.g. `invalid_request`, `unauthorized`, `queue_full`)
// except where OpenAI's own code is what clients check (`model_not_found`).
// Internals are hidden exactly as on /api (the leash mapping decides that).

import type { z } from 'zod';
import type { ErrorCode } from '../../core/error-codes.ts';
import { LeashError } from '../../core/errors.ts';
import { toErrorResponse, zodDetails } from '../errors.ts';

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** OpenAI's own codes that clients branch on (its status is given at the throw site, not looked up). */
type OpenAiCode = 'model_not_found' | 'previous_response_not_found' | 'task_cancelled' | 'timeout';

/** An error with OpenAI's status and `param` decided at the throw site. */
export class OpenAiError extends LeashError {
  readonly status: number;
  readonly param: string | null;

  constructor(status: number, code: ErrorCode | OpenAiCode, message: string, param: string | null = null) {
    super(code as ErrorCode, message);
    this.name = 'OpenAiError';
    this.status = status;
    this.param = param;
  }
}

/** OpenAI's `type` for a status: clients branch on the status, humans read the type. */
export function errorTypeOf(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** `input.messages.0.content` → `messages[0].content`, the way OpenAI names a param. */
export function paramName(path: string): string | null {
  if (path === '') return null;
  return path.split('.').reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : acc ? `${acc}.${seg}` : seg), '');
}

export function toOpenAiError(err: unknown): { status: number; body: OpenAiErrorBody; internal: boolean } {
  if (err instanceof OpenAiError) {
    return {
      status: err.status,
      body: { error: { message: err.message, type: errorTypeOf(err.status), param: err.param, code: err.code } },
      internal: false,
    };
  }
  const { status, body, internal } = toErrorResponse(err);
  const details = body.error.details;
  const first = Array.isArray(details) ? (details[0] as { path?: unknown } | undefined) : undefined;
  const param = typeof first?.path === 'string' ? paramName(first.path) : null;
  return {
    status,
    body: { error: { message: body.error.message, type: errorTypeOf(status), param, code: body.error.code } },
    internal,
  };
}

/**
 * Parses a request body with zod; a failure is a 400 naming the first bad field as
 * `param`. Unknown keys read like OpenAI's "Unrecognized request argument supplied".
 */
export function parseOpenAi<S extends z.ZodType>(schema: S, value: unknown, what = 'request body'): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue?.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    const path = [...issue.path.map(String), key].join('.');
    throw new OpenAiError(400, 'invalid_request', `Unrecognized request argument supplied: ${key}`, paramName(path));
  }
  const details = zodDetails(r.error);
  const first = details[0];
  const param = first ? paramName(first.path) : null;
  const missing = issue?.code === 'invalid_type' && /received undefined$/.test(issue.message);
  const message =
    first === undefined
      ? `Invalid ${what}`
      : first.path === ''
        ? `Invalid ${what}: ${first.message}`
        : missing
          ? `Missing required parameter: '${param}'.`
          : `Invalid '${param}': ${first.message}`;
  throw new OpenAiError(400, 'invalid_request', message, param);
}
