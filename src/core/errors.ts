// One error base class with a machine-readable `code` and a `cause` (as vercel/ai does).
// Codes are the `ErrorCode` union (error-codes.ts); the HTTP layer maps them to statuses.

import type { ErrorCode } from './error-codes.ts';
import type { TaskError } from './types.ts';

export interface LeashErrorOptions {
  details?: unknown;
  cause?: unknown;
}

export class LeashError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, options: LeashErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LeashError';
    this.code = code;
    this.details = options.details;
  }

  toJSON(): TaskError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  /**
   * An error that crossed a process boundary (remote worker, isolated handler, a
   * task's stored error). Its code is kept as sent, even one leash does not know
   * (a handler's own code): it is data here, not a code this process chose.
   */
  static fromJSON(e: TaskError, options: Omit<LeashErrorOptions, 'details'> = {}): LeashError {
    return new LeashError(e.code as ErrorCode, e.message, { ...options, details: e.details });
  }

  static is(e: unknown, code?: ErrorCode): e is LeashError {
    return e instanceof LeashError && (code === undefined || e.code === code);
  }
}

/** The error a task's handler failed with, as stored on the task (never a stack trace). */
export function toTaskError(e: unknown): TaskError {
  if (e instanceof LeashError) return e.toJSON();
  if (e instanceof Error) return { code: 'handler_error', message: e.message || e.name };
  return { code: 'handler_error', message: String(e) };
}
