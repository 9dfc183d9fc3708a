// THE CANCEL PATH, in one file. A cancel goes, in order:
//
// 1. A request. Every entry point calls `cancel(id, reason, { owner, quietIfEnded })`
//    here, through `Runtime.cancel`:
//      POST /api/tasks/:id/cancel ......... src/server/routes/tasks.ts
//      POST /api/tasks/cancel (batch) ..... src/server/routes/tasks.ts → cancelMany() below
//      WebSocket `cancel` frame ........... src/server/ws.ts (#cancel; one sent by request_id
//                                           before its run exists rides on create's `cancelled`, step 7)
//      thread interrupt (HTTP, WebSocket,
//        a new run's multitask strategy) .. src/threads/threads.ts (#stopActive)
//      a client gone (on_disconnect) ...... src/server/cancel-on-disconnect.ts (task SSE, thread
//                                           runs, /v1 chat completions and responses, WebSocket)
//      POST /v1/responses/:id/cancel ...... src/server/openai/responses.ts
//    `quietIfEnded`: a task that ended meanwhile (or is gone) is no error, the answer is null;
//    without it: 409 `task_ended` / 404 `not_found`. The one place that rule is written.
//    The node's own triggers know the run is here and enter at step 3, `stopRun`: its
//    deadline timer (active-run.ts armDeadline), shutdown (Runtime.stop), a stop found at
//    lease renewal whose notification was missed (cluster.ts), another node's NOTIFY (step 6).
//    Queued tasks past their deadline are ended in bulk by the reaper (cluster.ts
//    reapQueued, store.expireQueued) and told by `endedQueued` below, like step 2's.
//
// 2. The store. Queued: the row ends `cancelled` at once (store.cancelQueued) and never
//    starts; log `task.queued`, `task.cancelled`. Running on another node: the row is marked
//    `cancelling` (store.requestCancel) and that node is told by NOTIFY `cancel` with
//    `encodeCancel` (src/core/cancel.ts): step 6 there. Running here: step 3.
//
// 3. The run (`stopRun`). `task.cancelling` is appended (text the handler emitted before
//    it goes out first; nothing it emits after is delivered) and the task is `cancelling`
//    until the handler returns (ActiveRun.enterCancelling).
//
// 4. The signal. The run's AbortController aborts with a `CancelledError(reason)`
//    (src/core/cancel.ts, name `AbortError`): the handler's `ctx.signal` fires, the handler
//    passes it to its model call as `abortSignal` (src/models/model.ts), and the model's
//    client closes its request's socket at once (src/models/openai-compatible.ts, ai-sdk.ts;
//    `noteUpstreamClosed` → `upstream_closed` in the log line). A handler in a worker or
//    process gets `{t:'abort'}` over its channel and is killed past its grace
//    (isolation/executor.ts); a remote worker's is sent `cancel` (src/server/workers/hub.ts).
//
// 5. Grace. An inline handler can't be killed: one that has not returned within its grace
//    is detached (`detachPastGrace`): its task ends `cancelled` with `cancel.detached`, its
//    slot is freed, whatever it does later is dropped. Otherwise the handler returns and
//    ActiveRun.writeEnd writes `task.cancelled` and the one log line per cancel.
//
// 6. Another node's cancel (`onRemoteCancel`): NOTIFY `cancel` payloads are checked with
//    `decodeCancel` (a malformed one is logged and ignored). A run here is stopped (step 3);
//    a task not (yet) running here is remembered for 5 s: this node may have claimed it a
//    moment ago (step 7).
//
// 7. Early cancels (`atStart`): as a run starts, before its handler is called, it is
//    stopped if its deadline has passed, a cancel came with its create (WebSocket by
//    request_id), a NOTIFY came before it, or its row was claimed already `cancelling`.

import type { BatchCancelFilter, CancelReason, Task } from '../core/types.ts';
import { nowIso } from '../core/types.ts';
import { CancelledError, decodeCancel, encodeCancel } from '../core/cancel.ts';
import { LeashError } from '../core/errors.ts';
import type { ActiveRun } from './active-run.ts';
import { reportQueuedCancel } from './end-report.ts';
import { announceCrossNode, liveRun, type RuntimeNode } from './node.ts';

export interface CancelOptions {
  /** Who asks: a task of another owner is not found. */
  owner: string;
  /** A task that already ended (or is gone) is no error: the answer is null. */
  quietIfEnded?: boolean;
}

export interface CancelResult {
  /** The task as the cancel left it: `cancelled`, or `cancelling` until its handler returns. */
  task: Task;
  /** It was cancelled before this request. */
  alreadyCancelled: boolean;
}

/** How long a cancel for a task not running here is kept, in case it was claimed a moment ago. */
const EARLY_CANCEL_MS = 5000;
/** Looks again when the task moved on meanwhile (queued → claimed, here → elsewhere). */
const ATTEMPTS = 3;

export class Cancels {
  readonly #node: RuntimeNode;
  /** Step 6: cancels heard for tasks not running here (yet). */
  readonly #early = new Map<string, CancelReason>();
  /** Step 5: ends of detached handlers' tasks being written (stop() waits for them). */
  readonly #ending = new Set<Promise<void>>();

  constructor(node: RuntimeNode) {
    this.#node = node;
  }

  // ── 1–2. the request ────────────────────────────────────────────────────
  cancel(id: string, reason: CancelReason, opts: CancelOptions & { quietIfEnded?: false }): Promise<CancelResult>;
  cancel(id: string, reason: CancelReason, opts: CancelOptions): Promise<CancelResult | null>;
  async cancel(id: string, reason: CancelReason, opts: CancelOptions): Promise<CancelResult | null> {
    const { store, active } = this.#node;
    const { owner } = opts;
    const nothingToCancel = (e: LeashError): null => {
      if (opts.quietIfEnded) return null;
      throw e;
    };
    const ended = (status: string): null =>
      nothingToCancel(
        new LeashError('task_ended', `Task ${id} already ended with status ${status}.`, { details: { status } }),
      );
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const run = liveRun(this.#node, id);
      if (run) {
        if (run.task.owner !== owner) break;
        if (run.state === 'ended' && run.task.status !== 'cancelled') return ended(run.task.status);
        this.stopRun(run, reason);
        return { task: { ...run.task }, alreadyCancelled: run.state === 'ended' && run.task.status === 'cancelled' };
      }
      const t = await store.getTask(id, owner);
      if (!t) break;
      switch (t.status) {
        case 'cancelled':
          return { task: t, alreadyCancelled: true };
        case 'completed':
        case 'failed':
          return ended(t.status);
        case 'queued': {
          const asked = performance.now();
          const c = await store.cancelQueued(id, reason, nowIso());
          if (!c) continue; // claimed meanwhile: look again
          this.#node.events.poke(id);
          announceCrossNode(store, id);
          this.endedQueued(c, reason, performance.now() - asked);
          return { task: c, alreadyCancelled: false };
        }
        case 'running':
        case 'cancelling': {
          if (active.get(id)?.detached === null) continue; // started here meanwhile: step 3
          const c = (await store.requestCancel(id, reason, nowIso())) ?? (await store.getTask(id, owner));
          await store.notifier.publish('cancel', encodeCancel({ task_id: id, reason }));
          if (!c) continue;
          return { task: c, alreadyCancelled: c.status === 'cancelled' };
        }
      }
    }
    return nothingToCancel(new LeashError('not_found', `Task ${id} not found.`));
  }

  /** Batch cancel: every active task of the filter; the count and ids of those this call stopped. */
  async cancelMany(filter: BatchCancelFilter, reason: CancelReason): Promise<{ cancelled: number; ids: string[] }> {
    const ids = await this.#node.store.findActiveTaskIds(filter);
    const done: string[] = [];
    for (const id of ids) {
      const r = await this.cancel(id, reason, { owner: filter.owner, quietIfEnded: true });
      if (r !== null && !r.alreadyCancelled) done.push(id);
    }
    return { cancelled: done.length, ids: done };
  }

  // ── 3–5. the run ────────────────────────────────────────────────────────
  /** Stops a run of this node: `cancelling`, the grace armed, the signal aborted. No-op unless running. */
  stopRun(run: ActiveRun, reason: CancelReason): void {
    if (!run.enterCancelling(reason)) return;
    // An inline handler can't be killed: if it has not returned within its grace it
    // is detached, so nothing stays `cancelling` for ever (isolated ones are killed
    // by the executor instead).
    if (run.isolation === 'inline') run.armGrace(() => this.#detachPastGrace(run));
    run.controller.abort(new CancelledError(reason));
  }

  /**
   * An inline handler has not returned within its grace after its signal: detach it.
   * Its task ends `cancelled` with `cancel.detached: true`, its slot and its owner's
   * running count are freed, and whatever the handler does later is dropped (emit and
   * progress already are, since the cancel; its result by ActiveRun's finish).
   */
  #detachPastGrace(run: ActiveRun): void {
    if (!run.abandon()) return;
    const t = run.task;
    const { store, log } = this.#node;
    log.warn(
      { task_id: t.id, type: t.type, grace_ms: run.graceMs },
      `inline handler of type "${t.type}" ignored its cancel past its grace of ${run.graceMs} ms: detached (its task ends cancelled; the handler is left running, its output dropped). Run the type with isolation "worker" or "process" to have it killed instead.`,
    );
    const ending = (async () => {
      try {
        // The row says detached before anyone can read the terminal event.
        await store.markDetached(t.id);
      } catch (err) {
        log.error({ err, task_id: t.id }, 'recording a detached handler failed');
      }
      await run.writeEnd({ ok: false, error: null });
    })()
      .catch((err) => log.error({ err, task_id: t.id }, 'ending a detached task failed'))
      .finally(() => this.#ending.delete(ending));
    this.#ending.add(ending);
  }

  /** Settles once the ends of detached handlers' tasks under way are written. */
  async endsWritten(): Promise<void> {
    await Promise.all(this.#ending);
  }

  // ── 6. another node's cancel ────────────────────────────────────────────
  /** A NOTIFY `cancel` payload (what another node's step 2 sent). */
  onRemoteCancel(payload: string): void {
    const m = decodeCancel(payload);
    if (!m) return void this.#node.log.warn({ payload }, 'ignored a malformed cancel notification');
    const { task_id: id, reason } = m;
    const run = this.#node.active.get(id);
    if (run && run.detached === null) this.stopRun(run, reason);
    else if (!run) {
      // Possibly claimed by this node a moment ago; remembered briefly.
      this.#early.set(id, reason);
      setTimeout(() => this.#early.delete(id), EARLY_CANCEL_MS).unref();
    }
  }

  // ── 7. early cancels ────────────────────────────────────────────────────
  /**
   * A run starts (claimed, or started by its create): before its handler is called it
   * is stopped if it is already due to. `withCreate`: a cancel that came with its create.
   */
  atStart(run: ActiveRun, withCreate: CancelReason | null = null): void {
    const t = run.task;
    const early = withCreate ?? this.#early.get(t.id);
    if (withCreate !== null) this.#early.delete(t.id);
    if (t.deadline_at && Date.parse(t.deadline_at) <= Date.now()) {
      this.stopRun(run, 'deadline'); // waited in the queue past its deadline: never starts
    } else if (early) {
      this.#early.delete(t.id);
      this.stopRun(run, early);
    } else if (t.status === 'cancelling' && t.cancel) {
      this.stopRun(run, t.cancel.reason);
    }
  }

  /** A task ended `cancelled` before it ever started (step 2 for a queued task, the reaper, a create's cancel). */
  endedQueued(t: Task, reason: CancelReason, stoppedMs: number): void {
    const isolation = this.#node.defs.get(t.type)?.isolation ?? 'inline';
    reportQueuedCancel(this.#node, t, reason, stoppedMs, isolation);
  }
}
