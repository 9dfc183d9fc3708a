// The run of one task on this node, from its claim to its one terminal event: the
// handler's AbortController, the run's state (running → cancelling → ended), the
// handler's context (emit with its text batching, progress, checkpoint), its deadline
// timer and grace timer, and the end written once (and told: end-report.ts). How and
// when a run is stopped is decided in cancel.ts (stopRun, detachPastGrace), which calls
// the steps here.

import type { Logger } from 'pino';
import type { ModelRegistry } from '../models/model.ts';
import type { Store, TaskPatch } from '../store/store.ts';
import { CancelledError } from '../core/cancel.ts';
import { LeashError, toTaskError } from '../core/errors.ts';
import type { CancelReason, Isolation, Task } from '../core/types.ts';
import { nowIso } from '../core/types.ts';
import type { AnyTaskDefinition, TaskContext } from './define-task.ts';
import type { EventLog } from './event-log.ts';
import { DEFAULT_MEMORY_LIMIT_MB, type IsolatedExecutor } from './isolation/executor.ts';
import { reportRunEnd } from './end-report.ts';
import type { RuntimeObserver, TaskWithProgress } from './options.ts';

export const MAX_TIMER_MS = 2 ** 31 - 1;
/** A delta coming this long after the previous one is sent at once, not coalesced with the rest of its loop turn. */
const SLOW_DELTA_MS = 5;
export const RECENT_PROGRESS = 20;
/**
 * While text streams, the task row's `output_text` is saved at most this often (and
 * with every other patch: progress, cancelling, the end). Appending to a growing row
 * with every write batch rewrote it each time: half the SQLite thread's work under
 * 500 streams, and quadratic in an answer's length. The events hold every delta at
 * once; recovery rebuilds the row's text from them (Store.recoverLost).
 */
export const OUTPUT_SAVE_MS = 1000;

/** What a run needs of its node. */
export interface RunDeps {
  store: Store;
  models: ModelRegistry;
  log: Logger;
  events: EventLog;
  isolated: IsolatedExecutor;
  observer: RuntimeObserver;
  /** This node's runs by task id: a run leaves it once its end is written. */
  active: Map<string, ActiveRun>;
  /** A slot came free (the run ended or left this node): claim more work. */
  slotFree(): void;
  /** Stops a run (cancel.ts stopRun): its deadline timer calls it. */
  stop(run: ActiveRun, reason: CancelReason): void;
}

export type Outcome = { ok: true; result: unknown } | { ok: false; error: unknown };

export class ActiveRun {
  readonly task: Task;
  readonly isolation: Isolation;
  /** How long an inline handler may take to return after its signal before it is detached. */
  readonly graceMs: number;
  /** Aborted (with a CancelledError, by cancel.ts) to stop the handler: `ctx.signal`. */
  readonly controller = new AbortController();
  #state: 'running' | 'cancelling' | 'ended' = 'running';
  #detached: null | 'lost' | 'released' = null;
  #abandoned = false;
  #done: Promise<void> = Promise.resolve();
  #recent: TaskWithProgress['recent_progress'] = [];
  readonly #deps: RunDeps;
  #seq: number;
  /** Emitted text not yet appended as an event (flushed at the end of this event-loop turn). */
  #pendingText = '';
  #textFlush: NodeJS.Immediate | null = null;
  /** Text appended as events but not yet in a patch of the task row (see OUTPUT_SAVE_MS). */
  #unsavedText = '';
  #textSavedAt = performance.now();
  /** When the last `output.delta` was appended (performance.now()). */
  #lastDeltaAt = -Infinity;
  /** `ctx.emit` calls kept (one per model delta for the built-in types): the cancel log's token count. */
  #deltas = 0;
  #forced = false;
  #cancelAskedAt: number | null = null;
  /** When the work stopped after a cancel (performance.now()): handler returned, killed or detached. */
  #stoppedAt: number | null = null;
  #deadlineTimer: NodeJS.Timeout | null = null;
  #graceTimer: NodeJS.Timeout | null = null;
  /** Why the runtime stopped it (the store is down and too many events wait): it ends `failed` with this. */
  #failure: LeashError | null = null;

  constructor(deps: RunDeps, task: Task, lastSeq: number, isolation: Isolation, graceMs: number) {
    this.#deps = deps;
    this.task = { ...task };
    this.#seq = lastSeq;
    this.isolation = isolation;
    this.graceMs = graceMs;
  }

  /** `cancelling` from the stop request until the handler has returned; `ended` once its end is decided. */
  get state(): 'running' | 'cancelling' | 'ended' {
    return this.#state;
  }

  /**
   * No longer this node's to finish. `lost`: another node recovered it after its
   * lease ran out. `released`: handed back to the queue on stop(). Its handler is
   * aborted and nothing more is written for it from here.
   */
  get detached(): null | 'lost' | 'released' {
    return this.#detached;
  }

  /** Inline handler detached past its grace: its task ended without it; whatever it does later is dropped. */
  get abandoned(): boolean {
    return this.#abandoned;
  }

  /** Settles once the handler has returned and its end is written. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** The last progress reports, newest last. */
  get recentProgress(): TaskWithProgress['recent_progress'] {
    return [...this.#recent];
  }

  /** Its deadline stops it (reason `deadline`) while it runs. */
  armDeadline(): void {
    const t = this.task;
    if (!t.deadline_at) return;
    const ms = Date.parse(t.deadline_at) - Date.now();
    if (ms <= 0) return;
    this.#deadlineTimer = setTimeout(() => this.#deps.stop(this, 'deadline'), Math.min(ms, MAX_TIMER_MS));
    this.#deadlineTimer.unref();
  }

  /** Calls the handler (inline, or in a worker / process) and writes the end when it returns. */
  start(def: AnyTaskDefinition | undefined, checkpoint: unknown): void {
    const { task } = this;
    const { isolated, models, log } = this.#deps;
    this.#done = (async () => {
      let outcome: Outcome;
      try {
        if (!def) throw new LeashError('unknown_task_type', `No handler for task type "${task.type}" on this node.`);
        this.controller.signal.throwIfAborted();
        const input = (def.forOwner?.(task.owner) ?? def.input).parse(task.input);
        const ctx = this.#context(checkpoint);
        const result =
          this.isolation === 'inline'
            ? await def.run(input, ctx)
            : await isolated.run(this.isolation, def, input, ctx, {
                graceMs: this.graceMs,
                memoryLimitMb: def.memoryLimitMb ?? DEFAULT_MEMORY_LIMIT_MB,
                defaultModel: models.defaultModel,
                allowedModels: models.allowedModels,
                onForced: () => {
                  this.#forced = true;
                  log.warn(
                    { task_id: task.id, type: task.type, isolation: this.isolation, grace_ms: this.graceMs },
                    `handler of type "${task.type}" ignored its cancel past its grace: killed`,
                  );
                },
              });
        outcome = { ok: true, result };
      } catch (error) {
        outcome = { ok: false, error };
      }
      await this.#finish(outcome);
    })().catch((err) => log.error({ err, task_id: task.id }, 'finishing task failed'));
  }

  #context(checkpoint: unknown): TaskContext {
    const t = this.task;
    const { events, store } = this.#deps;
    return {
      taskId: t.id,
      owner: t.owner,
      threadId: t.thread_id,
      signal: this.controller.signal,
      deadline: t.deadline_at ? new Date(t.deadline_at) : null,
      resumeState: checkpoint ?? null,
      models: this.#deps.models,
      store,
      log: this.#deps.log.child({ task_id: t.id, type: t.type }),
      progress: (percent, message) => {
        if (this.#state !== 'running' || this.#failure !== null) return;
        if (events.overloaded) return this.#failOverloaded();
        this.flushText();
        const p = percent == null || !Number.isFinite(percent) ? null : Math.min(100, Math.max(0, percent));
        const m = message == null ? null : String(message).slice(0, 1000);
        t.progress = p;
        t.progress_message = m;
        const at = nowIso();
        this.#recent.push({ progress: p, message: m, at });
        if (this.#recent.length > RECENT_PROGRESS) this.#recent.shift();
        events.append(
          t.id,
          ++this.#seq,
          { type: 'task.progress', data: { progress: p, message: m } },
          this.#withText({ progress: p, progress_message: m }),
        );
      },
      emit: (text) => {
        if (this.#state !== 'running' || this.#failure !== null || typeof text !== 'string' || text.length === 0)
          return false;
        if (events.overloaded) {
          this.#failOverloaded();
          return false;
        }
        t.output_text += text;
        this.#pendingText += text;
        this.#deltas++;
        if (this.#textFlush !== null) return true;
        if (performance.now() - this.#lastDeltaAt >= SLOW_DELTA_MS) {
          // A slow stream's delta goes out now: waiting for the end of the loop turn
          // would add the time spent on every other socket read in it.
          this.flushText();
        } else {
          // Deltas emitted in one turn of the event loop become one `output.delta`: a
          // fast model's burst costs one event, not one per token.
          this.#textFlush = setImmediate(() => this.flushText());
        }
        return true;
      },
      checkpoint: async (state) => {
        if (this.#state !== 'running') return;
        // The output emitted before this checkpoint must be stored before it: a task
        // resumed from the checkpoint after a crash does not emit it again.
        this.flushText();
        await events.flush();
        if (this.#state !== 'running') return;
        await store.saveCheckpoint(t.id, state);
      },
    };
  }

  /** Appends the text emitted since the last delta as one `output.delta`. */
  flushText(): void {
    if (this.#textFlush) clearImmediate(this.#textFlush);
    this.#textFlush = null;
    if (this.#pendingText === '') return;
    const text = this.#pendingText;
    this.#pendingText = '';
    const now = performance.now();
    this.#lastDeltaAt = now;
    if (this.#state === 'ended') return;
    this.#unsavedText += text;
    const patch = now - this.#textSavedAt >= OUTPUT_SAVE_MS ? this.#withText({}) : undefined;
    this.#deps.events.append(this.task.id, ++this.#seq, { type: 'output.delta', data: { text } }, patch);
  }

  /** `patch` carrying the text not yet saved to the task row (OUTPUT_SAVE_MS). */
  #withText(patch: TaskPatch): TaskPatch {
    this.#textSavedAt = performance.now();
    if (this.#unsavedText === '') return patch;
    const out = { ...patch, append_output: this.#unsavedText };
    this.#unsavedText = '';
    return out;
  }

  // ── the steps of a stop (called by cancel.ts, in this order) ─────────────
  /** Running → cancelling: `task.cancelling` is appended. False when it was not running. */
  enterCancelling(reason: CancelReason): boolean {
    if (this.#state !== 'running') return false;
    const t = this.task;
    this.flushText(); // text accepted before the stop is delivered before task.cancelling
    this.#state = 'cancelling';
    this.#cancelAskedAt = performance.now();
    const cancel = { reason, requested_at: nowIso() };
    t.status = 'cancelling';
    t.cancel = cancel;
    this.#deps.events.append(
      t.id,
      ++this.#seq,
      { type: 'task.cancelling', data: { reason } },
      this.#withText({ status: 'cancelling', cancel }),
    );
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    return true;
  }

  /** `onOver` runs if the handler has not returned within its grace. */
  armGrace(onOver: () => void): void {
    this.#graceTimer = setTimeout(onOver, Math.min(this.graceMs, MAX_TIMER_MS));
    this.#graceTimer.unref();
  }

  /** Nothing is detached once the store may be closing (stop()): the grace timer goes. */
  disarmGrace(): void {
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
  }

  /**
   * The grace ran out: the run ends without its handler, which is left running with
   * its output dropped. False when there is nothing to abandon (it returned, or left).
   */
  abandon(): boolean {
    this.#graceTimer = null;
    if (this.#state !== 'cancelling' || this.#detached !== null || this.#abandoned) return false;
    this.#abandoned = true;
    this.#stoppedAt = performance.now();
    if (this.task.cancel) this.task.cancel = { ...this.task.cancel, detached: true };
    return true;
  }

  /**
   * This node stops owning the run: its handler is aborted, and nothing more is
   * written for it. `evenIfEnded`: the store refused its final events.
   */
  detach(why: 'lost' | 'released', evenIfEnded: boolean): void {
    if (this.#detached !== null || (this.#state === 'ended' && !evenIfEnded)) return;
    const id = this.task.id;
    this.#detached = why;
    if (why === 'lost') {
      this.#deps.events.discard(id);
      this.#deps.log.warn(
        { task_id: id },
        'task recovered by another node after this node’s lease ran out: stopping it here',
      );
    }
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    if (this.#state !== 'ended') {
      this.#state = 'ended'; // no more output, progress or cancel events from this run
      this.controller.abort(new CancelledError('shutdown'));
    }
    this.#deps.events.poke(id);
  }

  /**
   * The store has been down so long that the unwritten backlog reached its bound: this
   * task stops and ends `failed` `store_unavailable` instead of adding to it.
   */
  #failOverloaded(): void {
    if (this.#failure !== null || this.#state !== 'running') return;
    const { events, log } = this.#deps;
    this.#failure = backlogFull(events.pendingCount);
    log.error(
      { task_id: this.task.id, unwritten: events.pendingCount },
      'unwritten events at their bound: failing task',
    );
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    this.controller.abort(this.#failure);
  }

  // ── the end ─────────────────────────────────────────────────────────────
  /** The handler returned (or threw, or was killed). */
  async #finish(outcome: Outcome): Promise<void> {
    if (this.#abandoned) {
      // Detached past its grace: its task has ended without it. Nothing of it is kept.
      this.#deps.log.info(
        { task_id: this.task.id, type: this.task.type },
        'detached handler returned at last: its outcome is dropped',
      );
      return;
    }
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    this.#stoppedAt ??= performance.now();
    await this.writeEnd(outcome);
  }

  /** Writes the one terminal event of the run and frees its slot. */
  async writeEnd(outcome: Outcome): Promise<void> {
    this.flushText();
    const t = this.task;
    const { events, active } = this.#deps;
    if (this.#detached !== null) {
      // Another node has it (or will): nothing of this run is recorded here.
      if (active.get(t.id) === this) active.delete(t.id);
      // Lost: discard() untracked it. Released: its events are still being written, within
      // the window; untracked after (unless it runs here again by then).
      if (this.#detached === 'released') {
        void events.flush().then(() => {
          if (!active.has(t.id)) events.untrack(t.id);
        });
      }
      events.poke(t.id);
      this.#deps.slotFree();
      return;
    }
    const endedAt = nowIso();
    const wasCancelling = this.#state === 'cancelling';
    this.#state = 'ended';
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    if (wasCancelling) {
      const reason = t.cancel?.reason ?? 'user';
      t.status = 'cancelled';
      t.ended_at = endedAt;
      events.append(
        t.id,
        ++this.#seq,
        {
          type: 'task.cancelled',
          data: { reason, output_text: t.output_text, ...(this.#abandoned && { detached: true as const }) },
        },
        this.#withText({ status: 'cancelled', ended_at: endedAt }),
      );
    } else if (outcome.ok && this.#failure === null) {
      const result = outcome.result === undefined ? null : outcome.result;
      t.status = 'completed';
      t.result = result;
      t.ended_at = endedAt;
      if (t.progress !== null) t.progress = 100;
      events.append(
        t.id,
        ++this.#seq,
        { type: 'task.completed', data: { result } },
        this.#withText({
          status: 'completed',
          result,
          ended_at: endedAt,
          ...(t.progress !== null ? { progress: 100 } : {}),
        }),
      );
    } else {
      const error = toTaskError(this.#failure ?? (outcome.ok ? null : outcome.error));
      if (this.#failure === null && !outcome.ok && !LeashError.is(outcome.error))
        this.#deps.log.warn({ err: outcome.error, task_id: t.id }, 'task handler failed');
      t.status = 'failed';
      t.error = error;
      t.ended_at = endedAt;
      events.append(
        t.id,
        ++this.#seq,
        { type: 'task.failed', data: { error } },
        this.#withText({ status: 'failed', error, ended_at: endedAt }),
      );
    }
    await events.flush();
    if (active.get(t.id) === this) active.delete(t.id);
    events.untrack(t.id);
    if (this.#detached !== null) return; // taken over while its end was being written
    reportRunEnd(this.#deps, t, {
      wasCancelling,
      cancelAskedAt: this.#cancelAskedAt,
      stoppedAt: this.#stoppedAt ?? performance.now(),
      isolation: this.isolation,
      forced: this.#forced,
      detached: this.#abandoned,
      deltas: this.#deltas,
      signal: this.controller.signal,
    });
    this.#deps.slotFree();
  }
}

/** The store is not taking writes and the unwritten backlog is at its bound. */
export function backlogFull(unwritten: number): LeashError {
  return new LeashError(
    'store_unavailable',
    `The store is not taking writes and ${unwritten} events wait to be written (the bound is LEASH_MAX_UNWRITTEN_EVENTS); try again when it is back.`,
  );
}
