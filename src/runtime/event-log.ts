// The event log of the tasks this node runs: seq is assigned here, subscribers on
// this node hear each event at once (the bus), and the store gets the events in
// write-behind batches (one transaction for everything appended in a tick), which
// is what lets one SQLite file keep up with thousands of tasks per second.
// An event is always either still in memory here or already committed in the
// store, never neither: it leaves `pending`/`inflight` only after its commit.
//
// A seq handed out names its event for ever, crash or not: an event of a running task
// is delivered (to listeners, and by `uncommitted`) only while its seq is at most
// SEQ_AHEAD past the task's last committed seq; beyond that it waits here, unseen,
// until a commit moves the window. Recovery after a crash writes above that bound
// (Store.recoverLost), so a lost delta's seq is never reused. With a 100 ms batch
// window a task would need over 10,000 events a second to be held back at all.

import type { Logger } from 'pino';
import type { EventWrite, Store, TaskPatch } from '../store/store.ts';
import { SEQ_AHEAD } from '../store/store.ts';
import { LeashError } from '../core/errors.ts';
import type { TaskEvent, TaskEventData } from '../core/types.ts';
import { nowIso } from '../core/types.ts';

/**
 * An event appended on this node, or a poke about events written elsewhere (by another
 * node or by the store itself): a number n means "the store has the events up to seq n",
 * `null` means "something changed, re-read the store".
 */
export type BusListener = (event: TaskEvent | number | null) => void;

export interface EventLogOptions {
  /**
   * The store refused a task's events because another node took the task over
   * (`event_conflict`: its next seq is taken) or its row is gone (`not_found`). Its
   * events were dropped here; the runtime must stop the task's handler.
   */
  onTaskLost?: (taskId: string, err: LeashError) => void;
  /**
   * Write-behind batches start at most this often (ms; 0 = as soon as the previous one
   * is committed). Readers never wait for it (they have the events from memory); it
   * trades how long events stay only in memory for fewer, larger commits.
   */
  batchWindowMs?: number;
  /**
   * The window grows by 1 ms for each task the last batch wrote, up to this (ms; default
   * 5 × batchWindowMs). A commit writes a page per task it touches (a task's events are
   * stored together), so with many tasks streaming a longer wait packs more of each
   * one's events into its page: under 500 streams, 100 → 500 ms took the SQLite thread
   * from 17 to 12 µs a delta (BENCHMARKS.md). Readers never wait for it either way.
   */
  maxBatchWindowMs?: number;
  /**
   * Unwritten events (the store is down) past which `overloaded` is true: the runtime
   * then refuses new work and stops running tasks rather than grow memory (default 100,000).
   */
  maxUnwritten?: number;
}

export const DEFAULT_MAX_UNWRITTEN_EVENTS = 100_000;

export class EventLog {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #crossNode: boolean;
  readonly #onTaskLost: (taskId: string, err: LeashError) => void;
  #pending: EventWrite[] = [];
  #inflight: EventWrite[] = [];
  #flushing: Promise<void> | null = null;
  #scheduled = false;
  /** The window timer of the scheduled batch, if it waits for one. */
  #windowTimer: NodeJS.Timeout | null = null;
  /** A task is past half its SEQ_AHEAD: the next batch goes without waiting for the window. */
  #urgent = false;
  #listeners = new Map<string, Set<BusListener>>();
  #retryDelayMs = 0;
  readonly #windowMs: number;
  readonly #maxWindowMs: number;
  /** Tasks with events appended since the last batch started, and how many the last batch had. */
  #batchTasks = new Set<string>();
  #lastBatchTasks = 0;
  #lastFlushAt = -Infinity;
  readonly #maxUnwritten: number;
  /** Tasks running on this node: the last seq of theirs the store has committed. */
  #durable = new Map<string, number>();
  /** Events appended beyond `durable + SEQ_AHEAD`, not yet delivered, in seq order. */
  #held = new Map<string, TaskEvent[]>();

  constructor(store: Store, log: Logger, opts: EventLogOptions = {}) {
    this.#store = store;
    this.#log = log;
    // Other nodes hear of a batch after its commit (SQLite has no other nodes).
    this.#crossNode = store.kind !== 'sqlite';
    this.#onTaskLost = opts.onTaskLost ?? (() => {});
    this.#windowMs = opts.batchWindowMs ?? 0;
    this.#maxWindowMs = Math.max(this.#windowMs, opts.maxBatchWindowMs ?? 5 * this.#windowMs);
    this.#maxUnwritten = opts.maxUnwritten ?? DEFAULT_MAX_UNWRITTEN_EVENTS;
  }

  /**
   * A task starts running on this node; `committedSeq` is its last seq in the store
   * (the claim's `task.started`). Its events are delivered at most SEQ_AHEAD past
   * the last committed one from here on.
   */
  track(taskId: string, committedSeq: number): void {
    this.#durable.set(taskId, committedSeq);
  }

  /** The last seq of a task running here that the store has committed (after `flush()`: its last seq). */
  committedSeq(taskId: string): number | undefined {
    return this.#durable.get(taskId);
  }

  /** The task no longer runs here (its events are all written, or discarded). */
  untrack(taskId: string): void {
    this.#durable.delete(taskId);
    this.#held.delete(taskId);
  }

  /**
   * Appends an event with the seq its running node assigned. Listeners hear it
   * synchronously, unless its seq is too far past the task's last commit (see above).
   */
  append<E extends TaskEventData>(taskId: string, seq: number, part: E, patch?: TaskPatch): TaskEvent {
    const event = { ...part, task_id: taskId, seq, created_at: nowIso() } as TaskEvent;
    this.#pending.push(patch ? { event, patch } : { event });
    this.#batchTasks.add(taskId);
    const durable = this.#durable.get(taskId) ?? Infinity;
    // Half the window used before a commit: commit now rather than hold events back later.
    if (seq > durable + SEQ_AHEAD / 2) this.#urgent = true;
    this.#schedule();
    const held = this.#held.get(taskId);
    if (held !== undefined) held.push(event);
    else if (seq > durable + SEQ_AHEAD) this.#held.set(taskId, [event]);
    else this.#emit(taskId, event);
    return event;
  }

  /** More events wait to be written than the bound allows (the store is down or too slow). */
  get overloaded(): boolean {
    return this.#pending.length + this.#inflight.length >= this.#maxUnwritten;
  }

  /** The highest seq of `taskId` that may be delivered now. */
  #deliverable(taskId: string): number {
    return (this.#durable.get(taskId) ?? Infinity) + SEQ_AHEAD;
  }

  /** After a commit: move the tasks' windows and deliver what they now cover. */
  #committed(batch: EventWrite[]): void {
    for (const { event } of batch) {
      const d = this.#durable.get(event.task_id);
      if (d !== undefined && event.seq > d) this.#durable.set(event.task_id, event.seq);
    }
    for (const [taskId, held] of this.#held) {
      const limit = this.#deliverable(taskId);
      let n = 0;
      while (n < held.length && held[n]!.seq <= limit) n++;
      if (n === 0) continue;
      const out = held.splice(0, n);
      if (held.length === 0) this.#held.delete(taskId);
      for (const e of out) this.#emit(taskId, e);
    }
  }

  /** Tells this node's subscribers of `taskId` to re-read the store (up to `seq`, when known). */
  poke(taskId: string, seq?: number): void {
    this.#emit(taskId, seq ?? null);
  }

  /** Drops every not-yet-written event of `taskId` (a task this node no longer owns). */
  discard(taskId: string): void {
    this.#pending = this.#pending.filter((w) => w.event.task_id !== taskId);
    this.untrack(taskId);
  }

  listen(taskId: string, fn: BusListener): () => void {
    let set = this.#listeners.get(taskId);
    if (!set) this.#listeners.set(taskId, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.#listeners.get(taskId) === set) this.#listeners.delete(taskId);
    };
  }

  /** Events of `taskId` with seq > after that are not yet committed but may be delivered, in seq order. */
  uncommitted(taskId: string, after: number): TaskEvent[] {
    const out: TaskEvent[] = [];
    const limit = this.#deliverable(taskId);
    for (const w of this.#inflight) {
      if (w.event.task_id === taskId && w.event.seq > after && w.event.seq <= limit) out.push(w.event);
    }
    for (const w of this.#pending) {
      if (w.event.task_id === taskId && w.event.seq > after && w.event.seq <= limit) out.push(w.event);
    }
    return out;
  }

  /** Resolves once everything appended before the call is committed. */
  async flush(): Promise<void> {
    while (this.#pending.length > 0 || this.#flushing) {
      if (this.#flushing) await this.#flushing;
      else {
        if (this.#retryDelayMs > 0) await new Promise((r) => setTimeout(r, this.#retryDelayMs));
        if (!this.#flushing && this.#pending.length > 0) await this.#startFlush();
      }
    }
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** How long the next batch waits after the last one started (ms): see maxBatchWindowMs. */
  get batchWindowMs(): number {
    return Math.min(this.#maxWindowMs, this.#windowMs + this.#lastBatchTasks);
  }

  get pendingCount(): number {
    return this.#pending.length + this.#inflight.length;
  }

  #emit(taskId: string, event: TaskEvent | number | null): void {
    const set = this.#listeners.get(taskId);
    if (!set) return;
    // Iterating the set itself: a listener that unsubscribes meanwhile is skipped, which
    // is what a copy per event (thousands a second) would have bought.
    for (const fn of set) {
      try {
        fn(event);
      } catch (e) {
        this.#log.error({ err: e, task_id: taskId }, 'event listener threw');
      }
    }
  }

  #schedule(): void {
    if (this.#flushing) return;
    if (this.#scheduled) {
      // Waiting for the window while a task needs its commit now: go at once.
      if (!this.#urgent || this.#windowTimer === null || this.#retryDelayMs > 0) return;
      clearTimeout(this.#windowTimer);
      this.#windowTimer = null;
    }
    this.#scheduled = true;
    const run = (): void => {
      this.#scheduled = false;
      this.#windowTimer = null;
      if (!this.#flushing && this.#pending.length > 0) void this.#startFlush();
    };
    const wait = this.#urgent ? 0 : this.#lastFlushAt + this.batchWindowMs - performance.now();
    if (this.#retryDelayMs > 0) setTimeout(run, this.#retryDelayMs).unref();
    else if (wait > 0) (this.#windowTimer = setTimeout(run, wait)).unref();
    else setImmediate(run);
  }

  #startFlush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    this.#inflight = batch;
    this.#lastBatchTasks = this.#batchTasks.size;
    this.#batchTasks.clear();
    this.#lastFlushAt = performance.now();
    this.#urgent = false;
    const p = this.#store.writeEvents(batch).then(
      () => {
        this.#retryDelayMs = 0;
        this.#committed(batch);
        if (this.#crossNode) this.#announce(batch);
      },
      (err: unknown) => {
        const lost = lostTaskOf(err);
        if (lost !== null) {
          // Retrying would fail forever: the task is another node's now (or gone).
          // Drop its events, keep everyone else's, and write those at once.
          this.#log.warn({ task_id: lost, err }, 'task events refused: the task was taken over; dropping them');
          this.#pending = batch.filter((w) => w.event.task_id !== lost).concat(this.#pending);
          this.discard(lost);
          try {
            this.#onTaskLost(lost, err as LeashError);
          } catch (e) {
            this.#log.error({ err: e, task_id: lost }, 'onTaskLost threw');
          }
          return;
        }
        if (LeashError.is(err, 'store_closed')) {
          // Closed for good (this node is going away): retrying would never end.
          const lost = batch.length + this.#pending.length;
          this.#pending = [];
          this.#held.clear();
          this.#log.error({ err, events: lost }, 'the store was closed before these task events were written');
          return;
        }
        // Keep the batch (in order, ahead of newer events) and retry with backoff:
        // losing events would break the log's promise of no gaps.
        this.#log.error({ err, events: batch.length }, 'writing task events failed; will retry');
        this.#pending = batch.concat(this.#pending);
        this.#retryDelayMs = Math.min(Math.max(this.#retryDelayMs * 2, 10), 1000);
      },
    );
    this.#flushing = p.finally(() => {
      this.#inflight = [];
      this.#flushing = null;
      if (this.#pending.length > 0) this.#schedule();
    });
    return this.#flushing;
  }

  #announce(batch: EventWrite[]): void {
    const last = new Map<string, number>();
    for (const w of batch) last.set(w.event.task_id, w.event.seq);
    for (const [id, seq] of last) void this.#store.notifier.publish('events', `${id}:${seq}`).catch(() => {});
  }
}

/** The task a write failure is about when retrying cannot help, else null. */
function lostTaskOf(err: unknown): string | null {
  if (!LeashError.is(err, 'event_conflict') && !LeashError.is(err, 'not_found')) return null;
  const id = (err.details as { task_id?: unknown } | undefined)?.task_id;
  return typeof id === 'string' ? id : null;
}
