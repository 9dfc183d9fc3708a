// Every error code leash answers with, and the one table of their HTTP statuses.
// A code not listed here does not compile (`new LeashError('typo', …)`); codes that
// arrive from another process (a remote worker, an isolated handler, a task's stored
// error) go through `LeashError.fromJSON` and answer 500 when unknown.

export const ERROR_STATUS = {
  // 400: the request is wrong; the message says what to change.
  invalid_request: 400,
  invalid_json: 400,
  invalid_frame: 400,
  invalid_task_definition: 400,
  unknown_task_type: 400,
  unknown_model: 400,
  model_unavailable: 400,
  model_not_allowed: 400,
  not_supported: 400,
  // 401/403: who is asking, and from where.
  unauthorized: 401,
  host_not_allowed: 403,
  origin_not_allowed: 403,
  not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  // 409: the state of a task or thread forbids it.
  task_ended: 409,
  task_active: 409,
  thread_busy: 409,
  idempotency_conflict: 409,
  type_conflict: 409,
  event_conflict: 409,
  fenced: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  upgrade_required: 426,
  headers_too_large: 431,
  // 429: slow down (Retry-After says how long).
  too_many_types: 429,
  queue_full: 429,
  rate_limited: 429,
  too_many_streams: 429,
  too_many_subscriptions: 429,
  // 5xx: leash or what it depends on.
  internal_error: 500,
  migration_error: 500,
  upstream_error: 502,
  upstream_unreachable: 502,
  upstream_bad_response: 502,
  shutting_down: 503,
  not_ready: 503,
  store_unavailable: 503,
  store_closed: 503,
  models_busy: 503,
  out_of_memory: 503,
  // Stored on a task that did not complete; never an HTTP answer of their own.
  cancelled: 500,
  handler_error: 500,
  handler_crashed: 500,
  worker_lost: 500,
  node_lost: 500,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof ERROR_STATUS;

export const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_STATUS, code);

/** HTTP status of a code; codes from elsewhere that leash does not know are 500. */
export const httpStatusOf = (code: string): number => (isErrorCode(code) ? ERROR_STATUS[code] : 500);
