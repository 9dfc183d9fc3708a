// The cancel vocabulary every layer shares: why a task was cancelled, the abort reason
// a cancelled task's signal carries, and the one encoding of a cancel that crosses a
// process (the PostgreSQL notifier between nodes, the isolation channel to a worker
// thread or child process). What *does* a cancel lives in src/runtime/cancel.ts.

import { z } from 'zod';
import { LeashError } from './errors.ts';
import { CANCEL_REASONS, type CancelReason } from './types.ts';

/**
 * The abort reason of a cancelled task's signal. Its name is 'AbortError', so code that
 * checks `err.name === 'AbortError'` (fetch, the AI SDK, openai) treats it as an abort.
 */
export class CancelledError extends LeashError {
  readonly reason: CancelReason;
  constructor(reason: CancelReason) {
    super('cancelled', `task cancelled (${reason})`);
    this.name = 'AbortError';
    this.reason = reason;
  }
}

/** A cancel as it crosses a process boundary. */
export interface CancelMessage {
  task_id: string;
  reason: CancelReason;
}

const cancelReason = z.enum(CANCEL_REASONS);
const cancelMessage = z.object({ task_id: z.string().min(1), reason: cancelReason });

export const encodeCancel = (m: CancelMessage): string => JSON.stringify(m);

/** The cancel in `payload`, or null when it is not one (logged by the caller, never thrown). */
export function decodeCancel(payload: string): CancelMessage | null {
  let raw: unknown;
  try {
    raw = JSON.parse(payload);
  } catch {
    return null;
  }
  const r = cancelMessage.safeParse(raw);
  return r.success ? r.data : null;
}

/** `value` if it is a cancel reason, else null (what another process sent is checked, not cast). */
export const asCancelReason = (value: unknown): CancelReason | null => {
  const r = cancelReason.safeParse(value);
  return r.success ? r.data : null;
};

/** The cancel reason a leash-aborted signal carries; `fallback` for any other abort. */
export function cancelReasonOf(signal: AbortSignal, fallback: CancelReason = 'user'): CancelReason {
  return signal.reason instanceof CancelledError ? signal.reason.reason : fallback;
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
