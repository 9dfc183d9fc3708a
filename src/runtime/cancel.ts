// The cancel path, in one place. A task's cancel is one AbortController per task:
// request → runtime → handler (ctx.signal) → model call (passed unchanged to fetch).
// The abort reason is a CancelledError whose name is 'AbortError', so code that
// checks `err.name === 'AbortError'` (fetch, the AI SDK, openai) treats it as an abort.

import { LeashError } from './errors.ts';
import type { CancelReason } from './types.ts';

export class CancelledError extends LeashError {
  readonly reason: CancelReason;
  constructor(reason: CancelReason) {
    super('cancelled', `task cancelled (${reason})`);
    this.name = 'AbortError';
    this.reason = reason;
  }
}

const closedUpstream = new WeakSet<AbortSignal>();

/**
 * A model client closed an upstream call in flight because this signal aborted. The
 * runtime's cancel log line says so (`upstream_closed`); clients that don't call this
 * leave it unknown.
 */
export function noteUpstreamClosed(signal: AbortSignal): void {
  closedUpstream.add(signal);
}

/** Whether a model call was closed upstream because this signal aborted. */
export function upstreamClosed(signal: AbortSignal): boolean {
  return closedUpstream.has(signal);
}

/** The cancel reason carried by an aborted signal, if leash aborted it. */
export function cancelReasonOf(signal: AbortSignal): CancelReason | null {
  return signal.aborted && signal.reason instanceof CancelledError ? signal.reason.reason : null;
}

/** A cancel that found nothing left to stop: the task ended meanwhile, or is gone. */
export function isNothingToCancel(e: unknown): boolean {
  return LeashError.is(e, 'task_ended') || LeashError.is(e, 'not_found');
}

export function isAbortError(e: unknown): boolean {
  return e instanceof Error && (e.name === 'AbortError' || e instanceof CancelledError);
}

/**
 * Resolves after `ms`, or rejects with the signal's reason as soon as it aborts.
 * The timer and the listener are always removed (p-queue style), so an aborted
 * sleep leaves nothing behind.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
