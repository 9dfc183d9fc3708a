// Leases, shared by every Store so each behaves the same: what a renewal tells the
// node that renewed (the runtime's backstop for missed cancel notifications), and how
// a task whose node was lost ends.

import { LeashError } from '../core/errors.ts';
import type { CancelReason, TaskStatus } from '../core/types.ts';
import type { LeaseRenewal, RecoverLostOptions } from './store.ts';

/**
 * Splits the rows a node just renewed (its running and cancelling tasks) into the
 * stop requests it must act on and the tasks it thinks it runs but no longer holds.
 */
export function leaseRenewalOf(
  renewed: Array<{ id: string; status: TaskStatus; cancel_reason: CancelReason | null }>,
  held: readonly string[],
): LeaseRenewal {
  const mine = new Set(renewed.map((r) => r.id));
  return {
    cancelling: renewed
      .filter((r) => r.status === 'cancelling')
      .map((r) => ({ id: r.id, reason: r.cancel_reason ?? 'user' })),
    lost: held.filter((id) => !mine.has(id)),
  };
}

/** ISO-8601 UTC `iso` plus `ms`, in the same format (so lease strings compare correctly). */
export function addMs(iso: string, ms: number): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new LeashError('invalid_request', `not an ISO-8601 timestamp: ${iso}`);
  return new Date(t + ms).toISOString();
}

/** The message of `node_lost`; `durable` is the task's last seq the store had when its node was lost. */
export function nodeLostMessage(durable: number | string): string {
  return `the node running this task stopped before it finished; any output it streamed after seq ${durable} was lost with it`;
}

/** The error of a task whose node was lost (see nodeLostMessage). */
export function nodeLost(durable: number): { code: 'node_lost'; message: string } {
  return { code: 'node_lost', message: nodeLostMessage(durable) };
}

/** recoverLost must be told whose tasks: one node's, or those whose lease ended. */
export function checkRecoverOptions(opts: RecoverLostOptions): void {
  if (opts.nodeId === undefined && opts.expiredBefore === undefined) {
    throw new LeashError('invalid_request', 'recoverLost needs nodeId or expiredBefore');
  }
}

/** How a lost task ends: a stop was asked → cancelled; resumable type → queued again; else failed (node_lost). */
export function lostOutcome(
  t: { status: TaskStatus; type: string },
  resumable: ReadonlySet<string>,
): 'cancelled' | 'requeued' | 'failed' {
  if (t.status === 'cancelling') return 'cancelled';
  return resumable.has(t.type) ? 'requeued' : 'failed';
}
