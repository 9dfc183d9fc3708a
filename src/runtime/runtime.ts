// The task runtime: create → queue → claim → run → one terminal event.
// It owns the lifecycle rules of SPEC.md §1 so that no handler can break them:
//  - status is `cancelling` from the stop request until the handler has returned;
//  - after `task.cancelling` nothing the handler emits is delivered;
//  - exactly one terminal event, last in the log.
// I/O goes through the Store (and its Notifier); metrics through the observer.
//
// This class is the front: its parts, by what they know, are
//   create.ts      a create request checked, stored, started at once when a slot is free
//   scheduler.ts   the claim pump, slots, the start of a run
//   active-run.ts  the run of one task: signal, state, context, text batching, deadline, end
//   cancel.ts      the whole cancel path, every entry point's one call
//   cluster.ts     leases, reaping, runs lost or handed back
//   end-report.ts  the one log line per cancel and the observer's metrics
//   event-log.ts   events appended, batched, written and heard; follow.ts reads them

import type { Logger } from 'pino';
import type { ModelRegistry } from '../models/model.ts';
import type { ClaimOptions, Store } from '../store/store.ts';
import { LeashError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type {
  BatchCancelFilter,
  CancelReason,
  CreateTaskRequest,
  ListTasksFilter,
  Page,
  Task,
  TaskEvent,
  TaskStatus,
} from '../core/types.ts';
import { isTerminal } from '../core/types.ts';
import { MAX_TIMER_MS, RECENT_PROGRESS } from './active-run.ts';
import { Cancels, type CancelResult } from './cancel.ts';
import { Cluster } from './cluster.ts';
import { createTask, type CreateOptions } from './create.ts';
import type { AnyTaskDefinition } from './define-task.ts';
import { EventLog } from './event-log.ts';
import { followEvents } from './follow.ts';
import { IsolatedExecutor } from './isolation/executor.ts';
import { liveRun, resumableTypes, type RuntimeNode } from './node.ts';
import { limitsOf, taskTypesOf, type RuntimeOptions, type TaskWithProgress } from './options.ts';
import { Scheduler } from './scheduler.ts';

export type { RuntimeObserver, RuntimeOptions, TaskEndInfo, TaskWithProgress, TypeOverride } from './options.ts';
export type { CancelResult } from './cancel.ts';
export { hashInput } from './create.ts';

export class Runtime {
  readonly nodeId: string;
  readonly store: Store;
  readonly models: ModelRegistry;
  readonly #log: Logger;
  readonly #node: RuntimeNode;
  readonly #events: EventLog;
  readonly #isolated: IsolatedExecutor;
  readonly #cancels: Cancels;
  readonly #scheduler: Scheduler;
  readonly #cluster: Cluster;
  readonly #reaperIntervalMs: number;
  #stopped = false;
  #timers: NodeJS.Timeout[] = [];
  /** Kept apart from #timers: stop() keeps renewing while running tasks finish. */
  #renewTimer: NodeJS.Timeout | null = null;
  #unsubscribe: Array<() => void> = [];

  constructor(opts: RuntimeOptions) {
    this.store = opts.store;
    this.models = opts.models;
    this.#log = opts.logger;
    this.nodeId = opts.nodeId ?? newId('node');
    this.#events = new EventLog(opts.store, opts.logger, {
      onTaskLost: (id) => this.#cluster.detach(id, 'lost', true),
      batchWindowMs: opts.eventBatchMs ?? (opts.store.kind === 'sqlite' ? 100 : 0),
      ...(opts.maxUnwrittenEvents !== undefined && { maxUnwritten: opts.maxUnwrittenEvents }),
    });
    this.#isolated = new IsolatedExecutor({ maxIdle: opts.isolationMaxIdle ?? 2 });
    this.#reaperIntervalMs = Math.max(10, opts.reaperIntervalMs ?? 250);
    this.#node = {
      nodeId: this.nodeId,
      store: opts.store,
      log: opts.logger,
      events: this.#events,
      observer: opts.observer ?? {},
      defs: taskTypesOf(opts.tasks, opts.typeOverrides),
      limits: limitsOf(opts),
      active: new Map(),
    };
    this.#cancels = new Cancels(this.#node);
    this.#scheduler = new Scheduler(this.#node, this.#cancels, {
      store: opts.store,
      models: opts.models,
      log: opts.logger,
      events: this.#events,
      isolated: this.#isolated,
      observer: this.#node.observer,
    });
    this.#cluster = new Cluster(this.#node, this.#cancels, () => this.#scheduler.schedulePump());
  }

  get accepting(): boolean {
    return this.#scheduler.accepting;
  }

  /** How many tasks run on this node now (leak checks in tests use it). */
  get activeCount(): number {
    return this.#node.active.size;
  }

  get eventLog(): EventLog {
    return this.#events;
  }

  taskTypes(): string[] {
    return [...this.#node.defs.keys()];
  }

  /**
   * Registers a task type after start (remote workers declare theirs when they
   * connect). False when the name is taken: a type is never replaced under its tasks.
   */
  addTaskType(def: AnyTaskDefinition): boolean {
    if (this.#node.defs.has(def.type)) return false;
    this.#node.defs.set(def.type, def);
    return true;
  }

  /**
   * Which remote-worker tasks this node may claim now (see ClaimOptions.remote); asked
   * before every claim and eager start. The worker hub sets it.
   */
  setClaimFilter(filter: () => ClaimOptions['remote']): void {
    this.#scheduler.setClaimFilter(filter);
  }

  /** Something changed that may make queued tasks claimable here (a worker connected or freed a slot). */
  wakeup(): void {
    this.#scheduler.schedulePump();
  }

  /** The definition of a type (undefined when unknown). */
  taskType(type: string): AnyTaskDefinition | undefined {
    return this.#node.defs.get(type);
  }

  /** The worker / process pools (benchmarks prewarm them and read their cold-start counts). */
  get isolation(): IsolatedExecutor {
    return this.#isolated;
  }

  // ── lifecycle ───────────────────────────────────────────────────────────
  async start(): Promise<void> {
    if (this.#scheduler.accepting) return;
    await this.#cluster.recoverOnStart();
    const notifier = this.store.notifier;
    this.#unsubscribe.push(
      notifier.subscribe('wakeup', () => this.#scheduler.schedulePump()),
      notifier.subscribe('cancel', (payload) => this.#cancels.onRemoteCancel(payload)),
      // Events written elsewhere: one subscription for all readers, who hear it on the bus.
      notifier.subscribe('events', (payload) => {
        const [id, seq] = payload.split(':');
        // A task running here: its readers heard every event on the bus already (this
        // is this node's own announcement, heard locally), and a poke would only send
        // a reader that is behind to the store for what it has in memory.
        if (!id || this.outputText(id) !== null) return;
        this.#events.poke(id, seq === undefined ? undefined : Number(seq));
      }),
    );
    this.#scheduler.accepting = true;
    this.#stopped = false;
    const every = (ms: number, fn: () => Promise<unknown>): void => {
      const t = setInterval(() => void fn().catch((err) => this.#log.error({ err }, 'periodic job failed')), ms);
      t.unref();
      this.#timers.push(t);
    };
    every(1000, async () => this.#scheduler.schedulePump()); // backstop for a missed wake-up
    // The reaper: queued tasks past their deadline end (every node sweeps; the store
    // hands each expired task to one of them). Claims never start them either.
    every(this.#reaperIntervalMs, () => this.#cluster.reapQueued());
    // Heartbeat: a third of the lease, so two renewals can fail before it runs out.
    // It also carries stop requests whose notification this node missed.
    const leaseMs = this.#node.limits.leaseMs;
    this.#renewTimer = setInterval(
      () => void this.#cluster.renew().catch((err) => this.#log.error({ err }, 'renewing leases failed')),
      Math.max(100, Math.floor(leaseMs / 3)),
    );
    this.#renewTimer.unref();
    // Several nodes: find the tasks of stopped nodes soon after their lease ran out.
    if (this.store.kind !== 'sqlite') every(Math.max(250, Math.floor(leaseMs / 4)), () => this.#cluster.reapExpired());
    every(3_600_000, () => this.purge());
    await this.purge();
    this.#scheduler.schedulePump();
  }

  /**
   * Stop intake, let running work finish within the grace, then stop what is left.
   * One node (SQLite): cancelled with reason `shutdown`. Several nodes: resumable
   * tasks are handed back to the queue (another node resumes them from their
   * checkpoint), the rest are cancelled with reason `shutdown`; whatever is still
   * this node's after that is recovered at once, as another node would after the
   * lease. Queued tasks were never this node's: the others keep taking them.
   */
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#scheduler.accepting = false;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    // A claim under way (the store is async: another thread, another server) would
    // start its tasks after this stop had looked: let it land first, so they are
    // stopped below like the others.
    await this.#scheduler.settled();
    const active = this.#node.active;
    const grace = opts.graceMs ?? this.#node.limits.shutdownGraceMs;
    const allDone = (): Promise<unknown> => Promise.all([...active.values()].map((a) => a.done));
    if (active.size > 0 && grace > 0) await raceTimeout(allDone(), grace);
    const multiNode = this.store.kind !== 'sqlite';
    const resumable = new Set(resumableTypes(this.#node));
    for (const [id, a] of [...active]) {
      if (multiNode && a.state === 'running' && a.detached === null && resumable.has(a.task.type)) {
        this.#cluster.detach(id, 'released', false);
      } else if (a.detached === null) this.#cancels.stopRun(a, 'shutdown');
    }
    // Inline handlers can't be killed: one that ignores its signal is detached after its
    // own grace (its task ends `cancelled`, cancel.detached). Wait for that or the rest.
    if (active.size > 0) {
      const inlineGrace = Math.max(
        0,
        ...[...active.values()].filter((a) => a.isolation === 'inline').map((a) => a.graceMs + 50),
      );
      // (An operator-set grace of minutes is not waited out on stop: 30 s at most.)
      await raceTimeout(allDone(), Math.max(grace, 1000, Math.min(inlineGrace, 30_000)));
    }
    await this.#cancels.endsWritten();
    // Nothing is detached once the store may be closing: what is left is recovered at the next start.
    for (const a of active.values()) a.disarmGrace();
    await this.#events.flush();
    if (this.#renewTimer) clearInterval(this.#renewTimer);
    this.#renewTimer = null;
    if (multiNode) await this.#cluster.handBack();
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe = [];
    await this.#isolated.close();
  }

  async purge(): Promise<number> {
    const before = new Date(Date.now() - this.#node.limits.retentionMs).toISOString();
    const n = await this.store.purgeEnded(before);
    if (n > 0) this.#log.info({ purged: n }, 'purged ended tasks past retention');
    return n;
  }

  // ── API ─────────────────────────────────────────────────────────────────
  /** See create.ts; `opts.cancelled`: a cancel that came with the create (CreateOptions). */
  create(owner: string, req: CreateTaskRequest, opts: CreateOptions = {}): Promise<{ task: Task; created: boolean }> {
    return createTask(
      this.#node,
      { models: this.models, scheduler: this.#scheduler, cancels: this.#cancels },
      owner,
      req,
      opts,
    );
  }

  /** The text so far of a task running on this node (fresher than the store's), else null. */
  outputText(id: string): string | null {
    return liveRun(this.#node, id)?.task.output_text ?? null;
  }

  async get(id: string, owner: string): Promise<TaskWithProgress | null> {
    const a = liveRun(this.#node, id);
    if (a) return a.task.owner === owner ? { ...a.task, recent_progress: a.recentProgress } : null;
    const t = await this.store.getTask(id, owner);
    if (!t) return null;
    const recent: TaskWithProgress['recent_progress'] = [];
    for (const e of await this.store.listEvents(id, 0)) {
      if (e.type === 'task.progress')
        recent.push({ progress: e.data.progress, message: e.data.message, at: e.created_at });
    }
    return { ...t, recent_progress: recent.slice(-RECENT_PROGRESS) };
  }

  async list(filter: ListTasksFilter): Promise<Page<Task>> {
    const page = await this.store.listTasks(filter);
    // Running tasks of this node: their freshest state is in memory.
    return {
      ...page,
      data: page.data.map((t) => {
        const live = liveRun(this.#node, t.id);
        return live ? { ...live.task } : t;
      }),
    };
  }

  async countByStatus(): Promise<Record<TaskStatus, number>> {
    return this.store.countByStatus();
  }

  /**
   * Stop a task: the cancel path is cancel.ts. Queued: cancelled at once (it never
   * starts). Running here: the signal fires and the task is `cancelling` until its
   * handler returns. Running on another node: the stop is recorded and that node is
   * told. `quietIfEnded`: a task that ended (or is gone) answers null, not 409/404.
   */
  cancel(id: string, owner: string, reason?: CancelReason, opts?: { quietIfEnded?: false }): Promise<CancelResult>;
  cancel(
    id: string,
    owner: string,
    reason: CancelReason,
    opts: { quietIfEnded: boolean },
  ): Promise<CancelResult | null>;
  cancel(
    id: string,
    owner: string,
    reason: CancelReason = 'user',
    opts: { quietIfEnded?: boolean } = {},
  ): Promise<CancelResult | null> {
    return this.#cancels.cancel(id, reason, { owner, quietIfEnded: opts.quietIfEnded === true });
  }

  /** Batch cancel (cancel.ts cancelMany). */
  cancelMany(filter: BatchCancelFilter, reason: CancelReason = 'batch'): Promise<{ cancelled: number; ids: string[] }> {
    return this.#cancels.cancelMany(filter, reason);
  }

  /** The task once terminal, or as it is when `timeoutMs` passes or `signal` aborts. Null: not found. */
  async wait(id: string, owner: string, timeoutMs: number, signal?: AbortSignal): Promise<Task | null> {
    const t = await this.get(id, owner);
    if (!t || isTerminal(t.status) || timeoutMs <= 0) return t && stripRecent(t);
    const ac = new AbortController();
    const stopWaiting = (): void => ac.abort();
    const timer = setTimeout(stopWaiting, Math.min(timeoutMs, MAX_TIMER_MS));
    signal?.addEventListener('abort', stopWaiting);
    try {
      for await (const e of this.events(id, { signal: ac.signal, after: 0 })) {
        if (e.type === 'task.completed' || e.type === 'task.failed' || e.type === 'task.cancelled') break;
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', stopWaiting);
    }
    const final = await this.get(id, owner);
    return final && stripRecent(final);
  }

  async delete(id: string, owner: string): Promise<void> {
    const r = await this.store.deleteTask(id, owner);
    if (r === 0) throw new LeashError('not_found', `Task ${id} not found.`);
    if (r === 'active') {
      throw new LeashError('task_active', `Task ${id} has not ended; cancel it first.`);
    }
  }

  /** Replays events after `after`, then follows live; ends after the terminal event. Check ownership first. */
  events(id: string, opts: { after?: number; signal?: AbortSignal } = {}): AsyncGenerator<TaskEvent, void, undefined> {
    return followEvents(this.store, this.#events, id, opts);
  }
}

function stripRecent(t: TaskWithProgress): Task {
  const { recent_progress: _, ...task } = t;
  return task;
}

function raceTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    p.then(done, done);
  });
}
