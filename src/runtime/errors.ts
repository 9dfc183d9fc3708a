// One error base class with a machine-readable `code` and a `cause` (as vercel/ai does).
// The HTTP layer maps `code` to a status; nothing else needs to know about HTTP.

export interface LeashErrorOptions {
  details?: unknown;
  cause?: unknown;
}

export class LeashError extends Error {
  readonly code: string;
  readonly details: unknown;

  constructor(code: string, message: string, options: LeashErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LeashError';
    this.code = code;
    this.details = options.details;
  }

  toJSON(): { code: string; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  static is(e: unknown, code?: string): e is LeashError {
    return e instanceof LeashError && (code === undefined || e.code === code);
  }
}

/** HTTP status for each error code the API can answer with. Unknown codes are 500. */
export const HTTP_STATUS: Record<string, number> = {
  invalid_request: 400,
  invalid_json: 400,
  unknown_task_type: 400,
  unknown_model: 400,
  model_unavailable: 400,
  model_not_allowed: 400,
  unauthorized: 401,
  host_not_allowed: 403,
  origin_not_allowed: 403,
  not_found: 404,
  method_not_allowed: 405,
  task_ended: 409,
  task_active: 409,
  thread_busy: 409,
  idempotency_conflict: 409,
  type_conflict: 409,
  too_many_types: 429,
  payload_too_large: 413,
  unsupported_media_type: 415,
  queue_full: 429,
  rate_limited: 429,
  too_many_streams: 429,
  shutting_down: 503,
  not_ready: 503,
  store_unavailable: 503,
  store_closed: 503,
  models_busy: 503,
  internal_error: 500,
  upstream_error: 502,
  upstream_unreachable: 502,
  upstream_bad_response: 502,
};

export const httpStatusOf = (code: string): number => HTTP_STATUS[code] ?? 500;

/** The error a task's handler failed with, as stored on the task (never a stack trace). */
export function toTaskError(e: unknown): { code: string; message: string; details?: unknown } {
  if (e instanceof LeashError) return e.toJSON();
  if (e instanceof Error) return { code: 'handler_error', message: e.message || e.name };
  return { code: 'handler_error', message: String(e) };
}
