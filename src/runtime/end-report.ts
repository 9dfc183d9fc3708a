// The end of a task, told: the one log line per cancel (seed 003: `task cancelled`,
// with where it was stopped, how fast, and whether the model's socket was closed) and
// the observer's metrics. For a run (active-run.ts) and for a task cancelled before it
// ever started (cancel.ts: a queued task, the reaper, a create's cancel).

import type { Logger } from 'pino';
import { upstreamClosed } from '../core/cancel.ts';
import type { CancelReason, Isolation, Task } from '../core/types.ts';
import type { RuntimeObserver } from './options.ts';

interface Tell {
  log: Logger;
  observer: RuntimeObserver;
}

export interface RunEnd {
  wasCancelling: boolean;
  /** performance.now() of the stop request, and of the work stopped (returned, killed or detached). */
  cancelAskedAt: number | null;
  stoppedAt: number;
  isolation: Isolation;
  forced: boolean;
  detached: boolean;
  /** `ctx.emit` calls kept: the cancel log's token count. */
  deltas: number;
  signal: AbortSignal;
}

/** A run's end, once its terminal event is stored. */
export function reportRunEnd({ log, observer }: Tell, t: Task, e: RunEnd): void {
  const latency = e.cancelAskedAt === null ? null : e.stoppedAt - e.cancelAskedAt;
  const cleanup = e.cancelAskedAt === null ? null : performance.now() - e.stoppedAt;
  const reason = e.wasCancelling ? (t.cancel?.reason ?? 'user') : null;
  if (e.wasCancelling) {
    log.info(
      {
        task_id: t.id,
        type: t.type,
        reason,
        stage: 'running',
        stopped_ms: roundMs(latency),
        cleanup_ms: roundMs(cleanup),
        output_chars: t.output_text.length,
        deltas: e.deltas,
        isolation: e.isolation,
        forced: e.forced,
        detached: e.detached,
        // Inline only: an isolated handler's model calls have their own signal in its thread or process.
        ...(e.isolation === 'inline' && { upstream_closed: upstreamClosed(e.signal) }),
      },
      'task cancelled',
    );
  }
  observer.taskEnded?.(
    { ...t },
    {
      cancelLatencyMs: latency,
      cleanupMs: cleanup,
      isolation: e.isolation,
      forced: e.forced,
      detached: e.detached,
      cancelReason: reason,
      cancelStage: e.wasCancelling ? 'running' : null,
    },
  );
}

/** A task ended `cancelled` before it ever started. `stoppedMs`: how long the stop took (the reaper: how late). */
export function reportQueuedCancel(
  { log, observer }: Tell,
  t: Task,
  reason: CancelReason,
  stoppedMs: number,
  isolation: Isolation,
): void {
  log.info(
    {
      task_id: t.id,
      type: t.type,
      reason,
      stage: 'queued',
      stopped_ms: roundMs(stoppedMs),
      output_chars: 0,
      deltas: 0,
      detached: false,
    },
    'task cancelled',
  );
  observer.taskEnded?.(t, {
    cancelLatencyMs: null,
    cleanupMs: null,
    isolation,
    forced: false,
    detached: false,
    cancelReason: reason,
    cancelStage: 'queued',
  });
}

function roundMs(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms * 10) / 10;
}
