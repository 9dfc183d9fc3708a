// Scheduling on one node: the claim pump (ask the store for as many queued tasks as
// there are free slots, again while it hands out a full batch), the slots held for
// claims and eager creates under way, and the start of each run (cancel.ts decides
// whether it is stopped before its handler is called).

import type { ClaimOptions, ClaimedTask } from '../store/store.ts';
import type { CancelReason } from '../core/types.ts';
import { nowIso } from '../core/types.ts';
import { ActiveRun, type RunDeps } from './active-run.ts';
import type { Cancels } from './cancel.ts';
import { DEFAULT_GRACE_MS } from './isolation/executor.ts';
import type { RuntimeNode } from './node.ts';

export class Scheduler {
  readonly #node: RuntimeNode;
  readonly #cancels: Cancels;
  readonly #runDeps: RunDeps;
  /** Takes work: false before start() and from stop() on. */
  accepting = false;
  #pumping = false;
  #pumpAgain = false;
  /** The current pump's claim query is under way: a new request needs one more claim after it. */
  #claimStarted = false;
  /** Settles when the claim pump last scheduled has finished. */
  #pumpDone: Promise<void> = Promise.resolve();
  /** Slots promised to work not yet running: the claim under way (its max) and eager creates. */
  #claiming = 0;
  #eager = new Set<Promise<unknown>>();
  #claimFilter: (() => ClaimOptions['remote']) | null = null;

  constructor(node: RuntimeNode, cancels: Cancels, runDeps: Omit<RunDeps, 'slotFree' | 'stop' | 'active'>) {
    this.#node = node;
    this.#cancels = cancels;
    this.#runDeps = {
      ...runDeps,
      active: node.active,
      slotFree: () => this.schedulePump(),
      stop: (run, reason) => cancels.stopRun(run, reason),
    };
  }

  /** See Runtime.setClaimFilter. */
  setClaimFilter(filter: () => ClaimOptions['remote']): void {
    this.#claimFilter = filter;
  }

  /** Claims and eager starts under way have landed (stop() waits for them before it looks at the runs). */
  async settled(): Promise<void> {
    await this.#pumpDone;
    await Promise.all(this.#eager);
  }

  schedulePump(): void {
    if (!this.accepting) return;
    if (this.#pumping) {
      // A pump whose claim has not started yet will see whatever prompted this call
      // (tasks are committed before anyone is told). Only a claim already under way
      // may have missed it. (A create wakes its own node twice: locally and by its
      // notification; this keeps that to one claim.)
      if (this.#claimStarted) this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    this.#pumpDone = new Promise((r) => setImmediate(r)).then(async () => {
      try {
        do {
          this.#pumpAgain = false;
          this.#claimStarted = false;
          await this.#pumpOnce();
        } while (this.#pumpAgain && this.accepting);
      } catch (err) {
        this.#node.log.error({ err }, 'claiming tasks failed');
      } finally {
        this.#pumping = false;
        this.#claimStarted = false;
      }
    });
  }

  /** Slots neither running nor promised to a claim or an eager create under way. */
  #freeSlots(): number {
    return this.accepting ? this.#node.limits.concurrency - this.#node.active.size - this.#claiming : 0;
  }

  async #pumpOnce(): Promise<void> {
    const free = this.#freeSlots();
    if (free <= 0) return;
    const { store, nodeId, limits } = this.#node;
    const remote = this.#claimFilter?.();
    this.#claimStarted = true;
    this.#claiming += free;
    let claimed: ClaimedTask[];
    try {
      claimed = await store.claimTasks({
        nodeId,
        max: free,
        maxRunningPerOwner: limits.maxRunningPerOwner,
        leaseMs: limits.leaseMs,
        now: nowIso(),
        ...(remote && { remote }),
      });
    } finally {
      this.#claiming -= free;
    }
    for (const c of claimed) this.execute(c);
    if (claimed.length === free) this.#pumpAgain = true;
  }

  /**
   * A create may have the store start its task for this node in its own commit: true
   * (and a slot held for it, to be given back by `eagerSettled`) when a slot is free
   * and the claim filter lets this node run the type for the owner.
   */
  holdEagerSlot(type: string, owner: string): boolean {
    const remote = this.#claimFilter?.();
    const claimable =
      !remote || !remote.types.includes(type) || remote.allow.some((p) => p.owner === owner && p.type === type);
    if (!claimable || this.#freeSlots() <= 0) return false;
    this.#claiming++;
    return true;
  }

  /** The create that held a slot settles: the slot is given back (a run that started has its own). */
  async eagerSettled<T>(created: Promise<T>, started: (r: T) => boolean): Promise<T> {
    const settled = created.then(
      () => {},
      () => {},
    );
    this.#eager.add(settled);
    let used = false;
    try {
      const r = await created;
      used = started(r);
      return r;
    } finally {
      this.#claiming--;
      this.#eager.delete(settled);
      // The slot held for it went unused (queued, replayed, refused, failed): a claim
      // skipped meanwhile for want of a slot gets its turn now.
      if (!used) this.schedulePump();
    }
  }

  /** Starts a claimed task here. `cancelledWithCreate`: stop it before its handler runs. */
  execute(c: ClaimedTask, cancelledWithCreate: CancelReason | null = null): void {
    const { task, lastSeq, checkpoint, options } = c;
    const { defs, active, events, observer } = this.#node;
    const def = defs.get(task.type);
    const run = new ActiveRun(
      this.#runDeps,
      task,
      lastSeq,
      options?.isolation ?? def?.isolation ?? 'inline',
      options?.grace_ms ?? def?.graceMs ?? DEFAULT_GRACE_MS,
    );
    active.set(task.id, run);
    events.track(task.id, lastSeq); // its seqs are handed out from here (event-log.ts)
    events.poke(task.id); // task.started was written by the claim
    const startedAt = task.started_at ? Date.parse(task.started_at) : Date.now();
    observer.taskStarted?.(run.task, Math.max(0, startedAt - Date.parse(task.created_at)));
    run.armDeadline();
    this.#cancels.atStart(run, cancelledWithCreate);
    run.start(def, checkpoint);
  }
}
