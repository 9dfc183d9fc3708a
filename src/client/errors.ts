// Errors the SDK throws. An answer from the server is a LeashApiError (or one of
// its subclasses, picked by status/code) carrying the server's code, details and
// request id; no answer at all is a LeashConnectionError with the network error
// as `cause`. An aborted call rejects with the signal's reason, not with these.

export interface ApiErrorInit {
  status: number;
  code: string;
  message: string;
  details?: unknown;
  requestId?: string | null;
  headers?: Headers;
}

export class LeashApiError extends Error {
  /** HTTP status (0 for an error frame received over a WebSocket). */
  readonly status: number;
  /** The server's machine-readable code, e.g. `not_found`, `task_ended`, `thread_busy`. */
  readonly code: string;
  readonly details: unknown;
  /** `x-request-id` of the answer, to find it in the server's logs. */
  readonly requestId: string | null;
  readonly headers: Headers | undefined;

  constructor(init: ApiErrorInit) {
    super(init.message);
    this.name = 'LeashApiError';
    this.status = init.status;
    this.code = init.code;
    this.details = init.details;
    this.requestId = init.requestId ?? null;
    this.headers = init.headers;
  }
}

/** 400 (and 413, 415): the request was malformed; `details` names the fields. */
export class ValidationError extends LeashApiError {
  constructor(init: ApiErrorInit) {
    super(init);
    this.name = 'ValidationError';
  }
}

/** 401 / 403: missing or wrong API key. */
export class AuthError extends LeashApiError {
  constructor(init: ApiErrorInit) {
    super(init);
    this.name = 'AuthError';
  }
}

/** 404: no such task or thread (or another owner's, which looks the same). */
export class NotFoundError extends LeashApiError {
  constructor(init: ApiErrorInit) {
    super(init);
    this.name = 'NotFoundError';
  }
}

/** 409: `task_ended` (details.status says how), `task_active`, `thread_busy`, `idempotency_conflict`. */
export class ConflictError extends LeashApiError {
  constructor(init: ApiErrorInit) {
    super(init);
    this.name = 'ConflictError';
  }
}

/** 429: `queue_full` or `rate_limited`. */
export class RateLimitError extends LeashApiError {
  /** Seconds to wait, from `Retry-After` when the server sent one; null otherwise. */
  readonly retryAfter: number | null;
  constructor(init: ApiErrorInit) {
    super(init);
    this.name = 'RateLimitError';
    this.retryAfter = parseRetryAfter(init.headers?.get('retry-after') ?? null);
  }
}

/** 5xx: the server failed or is shutting down (`shutting_down`, `not_ready`). */
export class ServerError extends LeashApiError {
  constructor(init: ApiErrorInit) {
    super(init);
    this.name = 'ServerError';
  }
}

/** No answer from the server: refused, reset, DNS, a stream that kept dropping. */
export class LeashConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LeashConnectionError';
  }
}

export function parseRetryAfter(v: string | null): number | null {
  if (v === null || v.trim() === '') return null;
  const n = Number(v);
  if (Number.isFinite(n) && n >= 0) return n;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1000);
}

/** The subclass for an error answer. */
export function apiErrorFrom(init: ApiErrorInit): LeashApiError {
  const s = init.status;
  if (s === 400 || s === 413 || s === 415 || s === 422) return new ValidationError(init);
  if (s === 401 || s === 403) return new AuthError(init);
  if (s === 404) return new NotFoundError(init);
  if (s === 409) return new ConflictError(init);
  if (s === 429) return new RateLimitError(init);
  if (s >= 500) return new ServerError(init);
  return new LeashApiError(init);
}

/** Reads an error response (`{error: {code, message, details}}`, or anything else a proxy sent). */
export async function errorFromResponse(res: Response): Promise<LeashApiError> {
  const requestId = res.headers.get('x-request-id');
  let text = '';
  try {
    text = await res.text();
  } catch {
    // body unreadable: fall through with the status alone
  }
  let code = `http_${res.status}`;
  let message = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
  let details: unknown;
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    const e = body.error;
    if (e && typeof e === 'object') {
      if (typeof e.code === 'string') code = e.code;
      if (typeof e.message === 'string') message = e.message;
      details = e.details;
    }
  } catch {
    if (text.trim() !== '' && text.length < 500) message = `${message}: ${text.trim()}`;
  }
  return apiErrorFrom({ status: res.status, code, message, details, requestId, headers: res.headers });
}
