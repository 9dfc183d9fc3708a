// The task runtime: create → queue → claim → run → one terminal event.
// It owns the lifecycle rules of SPEC.md §1 so that no handler can break them:
//  - status is `cancelling` from the stop request until the handler has returned;
//  - after `task.cancelling` nothing the handler emits is delivered;
//  - exactly one terminal event, last in the log.
// I/O goes through the Store (and its Notifier); metrics through the observer.

import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { ZodType } from 'zod';
import type { ModelRegistry } from '../models/model.ts';
import type { ClaimOptions, ClaimedTask, Store, TaskRunOptions } from '../store/store.ts';
import { CancelledError, decodeCancel, encodeCancel, isNothingToCancel, upstreamClosed } from '../core/cancel.ts';
import { modelsOfInput } from './define-task.ts';
import type { AnyTaskDefinition, TaskContext } from './define-task.ts';
import { LeashError, toTaskError } from '../core/errors.ts';
import { EventLog } from './event-log.ts';
import { followEvents } from './follow.ts';
import { DEFAULT_GRACE_MS, DEFAULT_MEMORY_LIMIT_MB, IsolatedExecutor } from './isolation/executor.ts';
import type { Isolation } from '../core/types.ts';
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
import { ISOLATIONS, isTerminal, nowIso } from '../core/types.ts';

export interface TaskEndInfo {
  /**
   * Stop asked → work stopped: the handler returned, its worker/process was killed, or
   * it was detached. Null unless it was cancelled while running (a queued task that is
   * cancelled never ran: it is not a 0 s stop).
   */
  cancelLatencyMs: number | null;
  /** Work stopped → its terminal event stored (cancelled while running), else null. */
  cleanupMs: number | null;
  isolation: Isolation;
  /** The handler ignored its signal past its grace and was killed. */
  forced: boolean;
  /** The inline handler ignored its signal past its grace and was left running (detached). */
  detached: boolean;
  /** Why it was cancelled, when it ended `cancelled`. */
  cancelReason: CancelReason | null;
  /** Where a cancelled task was when it was stopped: never started (`queued`) or running. */
  cancelStage: 'queued' | 'running' | null;
}

export interface RuntimeObserver {
  taskStarted?(task: Task, pickupMs: number): void;
  taskEnded?(task: Task, info: TaskEndInfo): void;
}

export interface RuntimeOptions {
  store: Store;
  models: ModelRegistry;
  logger: Logger;
  tasks: AnyTaskDefinition[];
  nodeId?: string;
  /** Tasks this node runs at once. */
  concurrency?: number;
  maxRunningPerOwner?: number;
  maxQueuedPerOwner?: number;
  /** Deadline for types that declare none: nothing runs forever. */
  defaultDeadlineMs?: number;
  /** Ended tasks older than this are purged. */
  retentionMs?: number;
  /** On stop(): how long running tasks may finish before they are cancelled with reason `shutdown`. */
  shutdownGraceMs?: number;
  leaseMs?: number;
  /**
   * How often streamed events are committed at most (ms). Readers on this node have
   * them from memory at once either way; fewer, larger commits cost the store less.
   * Default: 100 on SQLite (no other node reads them), 0 on PostgreSQL (other nodes'
   * readers see a running task's events only once committed).
   */
  eventBatchMs?: number;
  /**
   * Events waiting to be written (the store is down) past which creates answer 503
   * `store_unavailable` and running tasks that emit fail with it, rather than memory
   * growing without bound (default 100,000).
   */
  maxUnwrittenEvents?: number;
  observer?: RuntimeObserver;
  /** Warm slots kept per isolation pool (worker / process). */
  isolationMaxIdle?: number;
  /** How often queued tasks past their deadline are looked for and ended (ms, default 250). */
  reaperIntervalMs?: number;
  /**
   * The operator's say over how task types run, by type (`*`: every type): isolation
   * (e.g. the built-in `chat` in `process`, so a stuck turn is killed) and grace.
   */
  typeOverrides?: Record<string, TypeOverride>;
}

export interface TypeOverride {
  isolation?: Isolation;
  graceMs?: number;
}

export type TaskWithProgress = Task & {
  recent_progress: Array<{ progress: number | null; message: string | null; at: string }>;
};

/** One task running on this node. */
interface Active {
  task: Task;
  /** Emitted text not yet appended as an event (flushed at the end of this event-loop turn). */
  pendingText: string;
  textFlush: NodeJS.Immediate | null;
  /** When the last `output.delta` was appended (performance.now()). */
  lastDeltaAt: number;
  isolation: Isolation;
  forced: boolean;
  seq: number;
  controller: AbortController;
  state: 'running' | 'cancelling' | 'ended';
  cancelAskedAt: number | null;
  recent: TaskWithProgress['recent_progress'];
  deadlineTimer: NodeJS.Timeout | null;
  /** How long an inline handler may take to return after its signal before it is detached. */
  graceMs: number;
  graceTimer: NodeJS.Timeout | null;
  /** Inline handler detached past its grace: its task ended without it; whatever it does later is dropped. */
  abandoned: boolean;
  /** When the work stopped after a cancel (performance.now()): handler returned, killed or detached. */
  stoppedAt: number | null;
  /** `ctx.emit` calls kept (one per model delta for the built-in types): the cancel log's token count. */
  deltas: number;
  done: Promise<void>;
  /** Why the runtime stopped it (the store is down and too many events wait): it ends `failed` with this. */
  failure: LeashError | null;
  /**
   * No longer this node's to finish. `lost`: another node recovered it after its
   * lease ran out. `released`: handed back to the queue on stop(). Its handler is
   * aborted and nothing more is written for it from here.
   */
  detached: null | 'lost' | 'released';
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** A delta coming this long after the previous one is sent at once, not coalesced with the rest of its loop turn. */
const SLOW_DELTA_MS = 5;
const RECENT_PROGRESS = 20;
const FAR_FUTURE = '9999-12-31T23:59:59.999Z';

export class Runtime {
  readonly nodeId: string;
  readonly store: Store;
  readonly models: ModelRegistry;
  readonly #log: Logger;
  readonly #defs = new Map<string, AnyTaskDefinition>();
  readonly #events: EventLog;
  readonly #active = new Map<string, Active>();
  readonly #observer: RuntimeObserver;
  readonly #isolated: IsolatedExecutor;
  readonly #opts: Required<
    Pick<
      RuntimeOptions,
      | 'concurrency'
      | 'maxRunningPerOwner'
      | 'maxQueuedPerOwner'
      | 'defaultDeadlineMs'
      | 'retentionMs'
      | 'shutdownGraceMs'
      | 'leaseMs'
    >
  >;
  #accepting = false;
  #stopped = false;
  #pumping = false;
  #pumpAgain = false;
  /** The current pump's claim query is under way: a new request needs one more claim after it. */
  #claimStarted = false;
  #timers: NodeJS.Timeout[] = [];
  /** Kept apart from #timers: stop() keeps renewing while running tasks finish. */
  #renewTimer: NodeJS.Timeout | null = null;
  #unsubscribe: Array<() => void> = [];
  /** Cancels heard for tasks this node had claimed but not yet registered. */
  #earlyCancels = new Map<string, CancelReason>();
  /** Settles when the claim pump last scheduled has finished. */
  #pumpDone: Promise<void> = Promise.resolve();
  /** Slots promised to work not yet in #active: the claim under way (its max) and eager creates. */
  #claiming = 0;
  #eager = new Set<Promise<unknown>>();
  /** Lease renewals fail (the store is unreachable); and when they last started working again (Date.now()). */
  #renewFailing = false;
  #storeBackAt = 0;
  /** Ends of detached handlers' tasks being written (stop() waits for them). */
  #ending = new Set<Promise<void>>();
  #reaping = false;
  #reapFailing = false;
  readonly #reaperIntervalMs: number;
  #claimFilter: (() => ClaimOptions['remote']) | null = null;

  constructor(opts: RuntimeOptions) {
    this.store = opts.store;
    this.models = opts.models;
    this.#log = opts.logger;
    this.nodeId = opts.nodeId ?? newId('node');
    this.#observer = opts.observer ?? {};
    this.#events = new EventLog(opts.store, opts.logger, {
      onTaskLost: (id) => this.#detach(id, 'lost', true),
      batchWindowMs: opts.eventBatchMs ?? (opts.store.kind === 'sqlite' ? 100 : 0),
      ...(opts.maxUnwrittenEvents !== undefined && { maxUnwritten: opts.maxUnwrittenEvents }),
    });
    this.#isolated = new IsolatedExecutor({ maxIdle: opts.isolationMaxIdle ?? 2 });
    this.#reaperIntervalMs = Math.max(10, opts.reaperIntervalMs ?? 250);
    this.#opts = {
      concurrency: opts.concurrency ?? 64,
      maxRunningPerOwner: opts.maxRunningPerOwner ?? 4,
      maxQueuedPerOwner: opts.maxQueuedPerOwner ?? 1000,
      defaultDeadlineMs: opts.defaultDeadlineMs ?? 60 * 60_000,
      retentionMs: opts.retentionMs ?? 7 * 24 * 3_600_000,
      shutdownGraceMs: opts.shutdownGraceMs ?? 10_000,
      leaseMs: opts.leaseMs ?? 30_000,
    };
    const overrides = opts.typeOverrides ?? {};
    for (const type of Object.keys(overrides)) {
      if (type !== '*' && !opts.tasks.some((d) => d.type === type)) {
        throw new TypeError(
          `No task type "${type}" to set options for (known: ${opts.tasks.map((d) => d.type).join(', ')})`,
        );
      }
    }
    for (const task of opts.tasks) {
      if (this.#defs.has(task.type)) throw new TypeError(`Task type "${task.type}" is registered twice`);
      const o = { ...overrides['*'], ...overrides[task.type] };
      const def = {
        ...task,
        ...(o.isolation !== undefined && { isolation: o.isolation }),
        ...(o.graceMs !== undefined && { graceMs: o.graceMs }),
      };
      if (def.isolation && def.isolation !== 'inline' && !def.module) {
        throw new TypeError(
          `Task type "${def.type}" can't run ${def.isolation}: its definition names no module to load in isolation`,
        );
      }
      this.#defs.set(def.type, def);
    }
  }

  get accepting(): boolean {
    return this.#accepting;
  }

  /** How many tasks run on this node now (leak checks in tests use it). */
  get activeCount(): number {
    return this.#active.size;
  }

  get eventLog(): EventLog {
    return this.#events;
  }

  taskTypes(): string[] {
    return [...this.#defs.keys()];
  }

  /**
   * Registers a task type after start (remote workers declare theirs when they
   * connect). False when the name is taken: a type is never replaced under its tasks.
   */
  addTaskType(def: AnyTaskDefinition): boolean {
    if (this.#defs.has(def.type)) return false;
    this.#defs.set(def.type, def);
    return true;
  }

  /**
   * Which remote-worker tasks this node may claim now (see ClaimOptions.remote); asked
   * before every claim and eager start. The worker hub sets it.
   */
  setClaimFilter(filter: () => ClaimOptions['remote']): void {
    this.#claimFilter = filter;
  }

  /** Something changed that may make queued tasks claimable here (a worker connected or freed a slot). */
  wakeup(): void {
    this.#schedulePump();
  }

  /** The definition of a type (undefined when unknown). */
  taskType(type: string): AnyTaskDefinition | undefined {
    return this.#defs.get(type);
  }

  // ── lifecycle ───────────────────────────────────────────────────────────
  async start(): Promise<void> {
    if (this.#accepting) return;
    const now = nowIso();
    // SQLite is one node: whatever was running when the last process died is lost.
    // Several nodes: only tasks whose lease ran out.
    const recovered = await this.store.recoverLost({
      expiredBefore: this.store.kind === 'sqlite' ? FAR_FUTURE : now,
      resumableTypes: this.#resumableTypes(),
      now,
    });
    for (const t of recovered) {
      this.#log.warn({ task_id: t.id, status: t.status }, 'recovered task of a stopped node');
      this.#events.poke(t.id);
    }
    this.#unsubscribe.push(
      this.store.notifier.subscribe('wakeup', () => this.#schedulePump()),
      this.store.notifier.subscribe('cancel', (payload) => this.#onRemoteCancel(payload)),
      // Events written elsewhere: one subscription for all readers, who hear it on the bus.
      this.store.notifier.subscribe('events', (payload) => {
        const [id, seq] = payload.split(':');
        // A task running here: its readers heard every event on the bus already (this
        // is this node's own announcement, heard locally), and a poke would only send
        // a reader that is behind to the store for what it has in memory.
        if (!id || this.outputText(id) !== null) return;
        this.#events.poke(id, seq === undefined ? undefined : Number(seq));
      }),
    );
    this.#accepting = true;
    this.#stopped = false;
    const every = (ms: number, fn: () => Promise<unknown>): void => {
      const t = setInterval(() => void fn().catch((err) => this.#log.error({ err }, 'periodic job failed')), ms);
      t.unref();
      this.#timers.push(t);
    };
    every(1000, async () => this.#schedulePump()); // backstop for a missed wake-up
    // The reaper: queued tasks past their deadline end (every node sweeps; the store
    // hands each expired task to one of them). Claims never start them either.
    every(this.#reaperIntervalMs, () => this.#reapQueued());
    // Heartbeat: a third of the lease, so two renewals can fail before it runs out.
    // It also carries stop requests whose notification this node missed.
    this.#renewTimer = setInterval(
      () => void this.#renew().catch((err) => this.#log.error({ err }, 'renewing leases failed')),
      Math.max(100, Math.floor(this.#opts.leaseMs / 3)),
    );
    this.#renewTimer.unref();
    // Several nodes: find the tasks of stopped nodes soon after their lease ran out.
    if (this.store.kind !== 'sqlite') {
      every(Math.max(250, Math.floor(this.#opts.leaseMs / 4)), () => this.#reapExpired());
    }
    every(3_600_000, () => this.purge());
    await this.purge();
    this.#schedulePump();
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
    this.#accepting = false;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    // A claim under way (the store is async: another thread, another server) would
    // start its tasks after this stop had looked: let it land first, so they are
    // stopped below like the others.
    await this.#pumpDone;
    await Promise.all(this.#eager);
    const grace = opts.graceMs ?? this.#opts.shutdownGraceMs;
    const allDone = (): Promise<unknown> => Promise.all([...this.#active.values()].map((a) => a.done));
    if (this.#active.size > 0 && grace > 0) await raceTimeout(allDone(), grace);
    const multiNode = this.store.kind !== 'sqlite';
    const resumable = new Set(this.#resumableTypes());
    for (const [id, a] of [...this.#active]) {
      if (multiNode && a.state === 'running' && a.detached === null && resumable.has(a.task.type)) {
        this.#detach(id, 'released', false);
      } else if (a.detached === null) this.#cancelLocal(id, 'shutdown');
    }
    // Inline handlers can't be killed: one that ignores its signal is detached after its
    // own grace (its task ends `cancelled`, cancel.detached). Wait for that or the rest.
    if (this.#active.size > 0) {
      const inlineGrace = Math.max(
        0,
        ...[...this.#active.values()].filter((a) => a.isolation === 'inline').map((a) => a.graceMs + 50),
      );
      // (An operator-set grace of minutes is not waited out on stop: 30 s at most.)
      await raceTimeout(allDone(), Math.max(grace, 1000, Math.min(inlineGrace, 30_000)));
    }
    await Promise.all(this.#ending);
    // Nothing is detached once the store may be closing: what is left is recovered at the next start.
    for (const a of this.#active.values()) if (a.graceTimer) clearTimeout(a.graceTimer);
    await this.#events.flush();
    if (this.#renewTimer) clearInterval(this.#renewTimer);
    this.#renewTimer = null;
    if (multiNode) await this.#handBack();
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe = [];
    await this.#isolated.close();
  }

  /** Several nodes, on stop: this node's remaining tasks go to the others now, not after the lease. */
  async #handBack(): Promise<void> {
    try {
      const now = nowIso();
      const handed = await this.store.recoverLost({ nodeId: this.nodeId, resumableTypes: this.#resumableTypes(), now });
      for (const t of handed) {
        this.#log.info({ task_id: t.id, status: t.status }, 'handed back on shutdown');
        this.#events.poke(t.id);
        this.#announceCrossNode(t.id);
      }
      if (handed.some((t) => t.status === 'queued')) await this.store.notifier.publish('wakeup', '');
    } catch (err) {
      this.#log.error({ err }, 'handing tasks back on shutdown failed; their leases will run out instead');
    }
  }

  /** The worker / process pools (benchmarks prewarm them and read their cold-start counts). */
  get isolation(): IsolatedExecutor {
    return this.#isolated;
  }

  async purge(): Promise<number> {
    const before = new Date(Date.now() - this.#opts.retentionMs).toISOString();
    const n = await this.store.purgeEnded(before);
    if (n > 0) this.#log.info({ purged: n }, 'purged ended tasks past retention');
    return n;
  }

  // ── API ─────────────────────────────────────────────────────────────────
  /**
   * `cancelled`: asked once the task exists, before it can start: a reason stops it
   * before its handler runs (a WebSocket cancel that came with its run) — an eagerly
   * started task is cancelled before its handler is called, a queued one is cancelled
   * before this node asks for a claim.
   */
  async create(
    owner: string,
    req: CreateTaskRequest,
    opts: { cancelled?: () => CancelReason | null } = {},
  ): Promise<{ task: Task; created: boolean }> {
    if (!this.#accepting) throw new LeashError('shutting_down', 'The server is shutting down and takes no new tasks.');
    const def = this.#defs.get(req.type);
    if (!def) {
      throw new LeashError(
        'unknown_task_type',
        `Unknown task type "${req.type}". Known types: ${this.taskTypes().join(', ')}.`,
      );
    }
    const parsed = (def.input as ZodType).safeParse(req.input);
    if (!parsed.success) {
      throw new LeashError('invalid_request', `Invalid input for task type "${req.type}".`, {
        details: parsed.error.issues.map((i) => ({
          path: ['input', ...i.path.map(String)].join('.'),
          message: i.message,
        })),
      });
    }
    // Before anything is stored or run: a model name outside the allowlist costs nothing.
    for (const spec of modelsOfInput(def, parsed.data)) this.models.check(spec);
    const priority = req.priority ?? 0;
    if (!Number.isInteger(priority) || priority < -100 || priority > 100) {
      throw new LeashError('invalid_request', 'priority must be an integer from -100 to 100.', {
        details: [{ path: 'priority', message: 'must be an integer from -100 to 100' }],
      });
    }
    const options = runOptions(def, req);
    // Checked after the input (bad input is a 4xx whatever the store's state).
    if (this.#events.overloaded) throw backlogFull(this.#events.pendingCount);
    if (req.thread_id != null && !(await this.store.getThread(req.thread_id, owner))) {
      throw new LeashError('not_found', `Thread ${req.thread_id} not found.`);
    }
    const input: unknown = parsed.data;
    const inputHash = hashInput(req.type, input);
    if (def.cache) {
      const since = new Date(Date.now() - def.cache.ttlMs).toISOString();
      const cached = await this.store.findCachedResult(owner, req.type, inputHash, since);
      if (cached) return { task: cached, created: false };
    }
    const createdAt = new Date();
    const deadlineMs = req.deadline_ms ?? def.deadlineMs ?? this.#opts.defaultDeadlineMs;
    // A free slot here: ask the store to start the task for this node in the create's
    // own commit (see CreateTaskOptions.startOn), saving the claim's round trip. The
    // slot is held for it like a claim's; other creates in flight do not stop it (on
    // PostgreSQL those of an owner far below its limit share the owner's lock, migration
    // 5; nearer the limit one may find the lock taken, and its task is queued).
    const remote = this.#claimFilter?.();
    const claimable =
      !remote || !remote.types.includes(req.type) || remote.allow.some((p) => p.owner === owner && p.type === req.type);
    const eager = claimable && this.#freeSlots() > 0;
    if (eager) this.#claiming++;
    const creating = this.store.createTask(
      {
        id: req.id ?? newId('task'),
        type: req.type,
        owner,
        input,
        input_hash: inputHash,
        priority,
        thread_id: req.thread_id ?? null,
        deadline_at: new Date(createdAt.getTime() + deadlineMs).toISOString(),
        created_at: createdAt.toISOString(),
        idempotency_key: req.idempotency_key ?? null,
        options,
      },
      {
        maxQueuedPerOwner: this.#opts.maxQueuedPerOwner,
        ...(eager && {
          startOn: {
            nodeId: this.nodeId,
            maxRunningPerOwner: this.#opts.maxRunningPerOwner,
            leaseMs: this.#opts.leaseMs,
            now: createdAt.toISOString(),
          },
        }),
      },
    );
    // An eagerly started task runs from here, before the promise stop() waits on settles
    // (as with a claim, its task must not start after stop() has looked).
    const created = creating.then((r) => {
      if (r.kind === 'created' && r.started) {
        const c = r.started;
        const stop = opts.cancelled?.() ?? null;
        if (stop !== null) this.#earlyCancels.set(c.task.id, stop); // #execute stops it before the handler runs
        this.#execute(c.task, c.lastSeq, c.checkpoint, c.options);
        this.#earlyCancels.delete(c.task.id);
      }
      return r;
    });
    let res: Awaited<typeof creating>;
    if (eager) {
      const settled = created.then(
        () => {},
        () => {},
      );
      this.#eager.add(settled);
      let used = false;
      try {
        res = await created;
        used = res.kind === 'created' && res.started !== undefined;
      } finally {
        this.#claiming--;
        this.#eager.delete(settled);
        // The slot held for it went unused (queued, replayed, refused, failed): a claim
        // skipped meanwhile for want of a slot gets its turn now.
        if (!used) this.#schedulePump();
      }
    } else res = await created;
    if (res.kind === 'created' && res.started) return { task: { ...res.started.task }, created: true };
    if (res.kind === 'queue_full') {
      throw new LeashError(
        'queue_full',
        `You have ${res.queued} queued tasks (limit ${this.#opts.maxQueuedPerOwner}). Wait for some to finish or cancel them.`,
      );
    }
    if (res.kind === 'created') {
      // Stopped before anyone could claim it (no claim has been asked for it yet here).
      const stop = opts.cancelled?.() ?? null;
      if (stop !== null) {
        const asked = performance.now();
        const c = await this.store.cancelQueued(res.task.id, stop, nowIso());
        if (c) {
          this.#events.poke(c.id);
          this.#announceCrossNode(c.id);
          this.#endedQueued(c, stop, performance.now() - asked);
          return { task: c, created: true };
        }
      }
      this.#schedulePump();
      if (this.store.kind !== 'sqlite') {
        void this.store.notifier.publish('wakeup', '').catch(() => {});
      }
    }
    return { task: res.task, created: res.kind === 'created' };
  }

  /** The text so far of a task running on this node (fresher than the store's), else null. */
  outputText(id: string): string | null {
    const a = this.#active.get(id);
    return a && a.detached === null ? a.task.output_text : null;
  }

  async get(id: string, owner: string): Promise<TaskWithProgress | null> {
    const a = this.#active.get(id);
    if (a && a.detached === null) return a.task.owner === owner ? { ...a.task, recent_progress: [...a.recent] } : null;
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
    const live = (id: string): Active | undefined => {
      const a = this.#active.get(id);
      return a && a.detached === null ? a : undefined;
    };
    return { ...page, data: page.data.map((t) => (live(t.id) ? { ...live(t.id)!.task } : t)) };
  }

  async countByStatus(): Promise<Record<TaskStatus, number>> {
    return this.store.countByStatus();
  }

  /**
   * Stop a task. Queued: cancelled at once (it never starts). Running here: the
   * signal fires and the task is `cancelling` until its handler returns. Running
   * on another node: the stop is recorded and that node is told.
   */
  /** `cancel`, for callers to whom a task that already ended (or is gone) is no error: null then. */
  async cancelIfActive(
    id: string,
    owner: string,
    reason: CancelReason,
  ): Promise<{ task: Task; alreadyCancelled: boolean } | null> {
    try {
      return await this.cancel(id, owner, reason);
    } catch (e) {
      if (isNothingToCancel(e)) return null;
      throw e;
    }
  }

  async cancel(
    id: string,
    owner: string,
    reason: CancelReason = 'user',
  ): Promise<{ task: Task; alreadyCancelled: boolean }> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const a = this.#active.get(id);
      if (a && a.detached === null) {
        if (a.task.owner !== owner) break;
        if (a.state === 'ended' && a.task.status !== 'cancelled') {
          throw new LeashError('task_ended', `Task ${id} already ended with status ${a.task.status}.`, {
            details: { status: a.task.status },
          });
        }
        return this.#cancelLocal(id, reason);
      }
      const t = await this.store.getTask(id, owner);
      if (!t) break;
      switch (t.status) {
        case 'cancelled':
          return { task: t, alreadyCancelled: true };
        case 'completed':
        case 'failed':
          throw new LeashError('task_ended', `Task ${id} already ended with status ${t.status}.`, {
            details: { status: t.status },
          });
        case 'queued': {
          const asked = performance.now();
          const c = await this.store.cancelQueued(id, reason, nowIso());
          if (!c) continue; // claimed meanwhile: look again
          this.#events.poke(id);
          this.#announceCrossNode(id);
          this.#endedQueued(c, reason, performance.now() - asked);
          return { task: c, alreadyCancelled: false };
        }
        case 'running':
        case 'cancelling': {
          if (this.#active.get(id)?.detached === null) continue;
          const c = (await this.store.requestCancel(id, reason, nowIso())) ?? (await this.store.getTask(id, owner));
          await this.store.notifier.publish('cancel', encodeCancel({ task_id: id, reason }));
          if (!c) break;
          return { task: c, alreadyCancelled: c.status === 'cancelled' };
        }
      }
    }
    throw new LeashError('not_found', `Task ${id} not found.`);
  }

  async cancelMany(
    filter: BatchCancelFilter,
    reason: CancelReason = 'batch',
  ): Promise<{ cancelled: number; ids: string[] }> {
    const ids = await this.store.findActiveTaskIds(filter);
    const done: string[] = [];
    for (const id of ids) {
      const r = await this.cancelIfActive(id, filter.owner, reason);
      if (r !== null && !r.alreadyCancelled) done.push(id);
    }
    return { cancelled: done.length, ids: done };
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

  // ── scheduling ──────────────────────────────────────────────────────────
  #schedulePump(): void {
    if (!this.#accepting) return;
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
        } while (this.#pumpAgain && this.#accepting);
      } catch (err) {
        this.#log.error({ err }, 'claiming tasks failed');
      } finally {
        this.#pumping = false;
        this.#claimStarted = false;
      }
    });
  }

  /** Slots neither running nor promised to a claim or an eager create under way. */
  #freeSlots(): number {
    return this.#accepting ? this.#opts.concurrency - this.#active.size - this.#claiming : 0;
  }

  async #pumpOnce(): Promise<void> {
    const free = this.#freeSlots();
    if (free <= 0) return;
    const remote = this.#claimFilter?.();
    this.#claimStarted = true;
    this.#claiming += free;
    let claimed: ClaimedTask[];
    try {
      claimed = await this.store.claimTasks({
        nodeId: this.nodeId,
        max: free,
        maxRunningPerOwner: this.#opts.maxRunningPerOwner,
        leaseMs: this.#opts.leaseMs,
        now: nowIso(),
        ...(remote && { remote }),
      });
    } finally {
      this.#claiming -= free;
    }
    for (const c of claimed) this.#execute(c.task, c.lastSeq, c.checkpoint, c.options);
    if (claimed.length === free) this.#pumpAgain = true;
  }

  #execute(task: Task, lastSeq: number, checkpoint: unknown, options: TaskRunOptions | null = null): void {
    const def = this.#defs.get(task.type);
    const controller = new AbortController();
    const a: Active = {
      task: { ...task },
      pendingText: '',
      textFlush: null,
      lastDeltaAt: -Infinity,
      isolation: options?.isolation ?? def?.isolation ?? 'inline',
      forced: false,
      seq: lastSeq,
      controller,
      state: 'running',
      cancelAskedAt: null,
      recent: [],
      deadlineTimer: null,
      graceMs: options?.grace_ms ?? def?.graceMs ?? DEFAULT_GRACE_MS,
      graceTimer: null,
      abandoned: false,
      stoppedAt: null,
      deltas: 0,
      done: Promise.resolve(),
      failure: null,
      detached: null,
    };
    this.#active.set(task.id, a);
    this.#events.track(task.id, lastSeq); // its seqs are handed out from here (event-log.ts)
    this.#events.poke(task.id); // task.started was written by the claim
    const startedAt = task.started_at ? Date.parse(task.started_at) : Date.now();
    this.#observer.taskStarted?.(a.task, Math.max(0, startedAt - Date.parse(task.created_at)));

    if (task.deadline_at) {
      const ms = Date.parse(task.deadline_at) - Date.now();
      if (ms > 0) {
        a.deadlineTimer = setTimeout(() => this.#cancelLocal(task.id, 'deadline'), Math.min(ms, MAX_TIMER_MS));
        a.deadlineTimer.unref();
      }
    }
    const early = this.#earlyCancels.get(task.id);
    if (task.deadline_at && Date.parse(task.deadline_at) <= Date.now()) {
      this.#cancelLocal(task.id, 'deadline'); // waited in the queue past its deadline: never starts
    } else if (early) {
      this.#earlyCancels.delete(task.id);
      this.#cancelLocal(task.id, early);
    } else if (task.status === 'cancelling' && task.cancel) {
      this.#cancelLocal(task.id, task.cancel.reason);
    }

    a.done = (async () => {
      let outcome: { ok: true; result: unknown } | { ok: false; error: unknown };
      try {
        if (!def) throw new LeashError('unknown_task_type', `No handler for task type "${task.type}" on this node.`);
        controller.signal.throwIfAborted();
        const input = def.input.parse(task.input);
        const ctx = this.#context(a, checkpoint);
        const result =
          a.isolation === 'inline'
            ? await def.run(input, ctx)
            : await this.#isolated.run(a.isolation, def, input, ctx, {
                graceMs: a.graceMs,
                memoryLimitMb: def.memoryLimitMb ?? DEFAULT_MEMORY_LIMIT_MB,
                defaultModel: this.models.defaultModel,
                allowedModels: this.models.allowedModels,
                onForced: () => {
                  a.forced = true;
                  this.#log.warn(
                    { task_id: task.id, type: task.type, isolation: a.isolation, grace_ms: a.graceMs },
                    `handler of type "${task.type}" ignored its cancel past its grace: killed`,
                  );
                },
              });
        outcome = { ok: true, result };
      } catch (error) {
        outcome = { ok: false, error };
      }
      await this.#finish(a, outcome);
    })().catch((err) => this.#log.error({ err, task_id: task.id }, 'finishing task failed'));
  }

  #context(a: Active, checkpoint: unknown): TaskContext {
    const t = a.task;
    const log = this.#log.child({ task_id: t.id, type: t.type });
    return {
      taskId: t.id,
      owner: t.owner,
      threadId: t.thread_id,
      signal: a.controller.signal,
      deadline: t.deadline_at ? new Date(t.deadline_at) : null,
      resumeState: checkpoint ?? null,
      models: this.models,
      store: this.store,
      log,
      progress: (percent, message) => {
        if (a.state !== 'running' || a.failure !== null) return;
        if (this.#events.overloaded) return this.#failOverloaded(a);
        this.#flushText(a);
        const p = percent == null || !Number.isFinite(percent) ? null : Math.min(100, Math.max(0, percent));
        const m = message == null ? null : String(message).slice(0, 1000);
        a.task.progress = p;
        a.task.progress_message = m;
        const at = nowIso();
        a.recent.push({ progress: p, message: m, at });
        if (a.recent.length > RECENT_PROGRESS) a.recent.shift();
        this.#events.append(
          t.id,
          ++a.seq,
          { type: 'task.progress', data: { progress: p, message: m } },
          {
            progress: p,
            progress_message: m,
          },
        );
      },
      emit: (text) => {
        if (a.state !== 'running' || a.failure !== null || typeof text !== 'string' || text.length === 0) return false;
        if (this.#events.overloaded) {
          this.#failOverloaded(a);
          return false;
        }
        a.task.output_text += text;
        a.pendingText += text;
        a.deltas++;
        if (a.textFlush !== null) return true;
        const now = performance.now();
        if (now - a.lastDeltaAt >= SLOW_DELTA_MS) {
          // A slow stream's delta goes out now: waiting for the end of the loop turn
          // would add the time spent on every other socket read in it.
          this.#flushText(a);
        } else {
          // Deltas emitted in one turn of the event loop become one `output.delta`: a
          // fast model's burst costs one event, not one per token.
          a.textFlush = setImmediate(() => this.#flushText(a));
        }
        return true;
      },
      checkpoint: async (state) => {
        if (a.state !== 'running') return;
        // The output emitted before this checkpoint must be stored before it: a task
        // resumed from the checkpoint after a crash does not emit it again.
        this.#flushText(a);
        await this.#events.flush();
        if (a.state !== 'running') return;
        await this.store.saveCheckpoint(t.id, state);
      },
    };
  }

  #cancelLocal(id: string, reason: CancelReason): { task: Task; alreadyCancelled: boolean } {
    const a = this.#active.get(id)!;
    if (a.state === 'running') {
      this.#flushText(a); // text accepted before the stop is delivered before task.cancelling
      a.state = 'cancelling';
      a.cancelAskedAt = performance.now();
      const cancel = { reason, requested_at: nowIso() };
      a.task.status = 'cancelling';
      a.task.cancel = cancel;
      this.#events.append(id, ++a.seq, { type: 'task.cancelling', data: { reason } }, { status: 'cancelling', cancel });
      if (a.deadlineTimer) clearTimeout(a.deadlineTimer);
      // An inline handler can't be killed: if it has not returned within its grace it
      // is detached, so nothing stays `cancelling` for ever (isolated ones are killed
      // by the executor instead).
      if (a.isolation === 'inline') {
        a.graceTimer = setTimeout(() => this.#abandon(a), Math.min(a.graceMs, MAX_TIMER_MS));
        a.graceTimer.unref();
      }
      a.controller.abort(new CancelledError(reason));
    }
    return { task: { ...a.task }, alreadyCancelled: a.state === 'ended' && a.task.status === 'cancelled' };
  }

  /**
   * The store has been down so long that the unwritten backlog reached its bound: this
   * task stops and ends `failed` `store_unavailable` instead of adding to it.
   */
  #failOverloaded(a: Active): void {
    if (a.failure !== null || a.state !== 'running') return;
    a.failure = backlogFull(this.#events.pendingCount);
    this.#log.error(
      { task_id: a.task.id, unwritten: this.#events.pendingCount },
      'unwritten events at their bound: failing task',
    );
    if (a.deadlineTimer) clearTimeout(a.deadlineTimer);
    a.controller.abort(a.failure);
  }

  /** Appends the text emitted since the last delta as one `output.delta`. */
  #flushText(a: Active): void {
    if (a.textFlush) clearImmediate(a.textFlush);
    a.textFlush = null;
    if (a.pendingText === '') return;
    const text = a.pendingText;
    a.pendingText = '';
    a.lastDeltaAt = performance.now();
    if (a.state === 'ended') return;
    this.#events.append(a.task.id, ++a.seq, { type: 'output.delta', data: { text } }, { append_output: text });
  }

  /** The handler returned (or threw, or was killed). */
  async #finish(a: Active, outcome: Outcome): Promise<void> {
    if (a.abandoned) {
      // Detached past its grace: its task has ended without it. Nothing of it is kept.
      this.#log.info(
        { task_id: a.task.id, type: a.task.type },
        'detached handler returned at last: its outcome is dropped',
      );
      return;
    }
    if (a.graceTimer) clearTimeout(a.graceTimer);
    a.graceTimer = null;
    a.stoppedAt ??= performance.now();
    await this.#writeEnd(a, outcome);
  }

  /**
   * An inline handler has not returned within its grace after its signal: detach it.
   * Its task ends `cancelled` with `cancel.detached: true`, its slot and its owner's
   * running count are freed, and whatever the handler does later is dropped (emit and
   * progress already are, since the cancel; its result by #finish).
   */
  #abandon(a: Active): void {
    a.graceTimer = null;
    if (a.state !== 'cancelling' || a.detached !== null || a.abandoned) return;
    a.abandoned = true;
    a.stoppedAt = performance.now();
    const t = a.task;
    if (t.cancel) t.cancel = { ...t.cancel, detached: true };
    this.#log.warn(
      { task_id: t.id, type: t.type, grace_ms: a.graceMs },
      `inline handler of type "${t.type}" ignored its cancel past its grace of ${a.graceMs} ms: detached (its task ends cancelled; the handler is left running, its output dropped). Run the type with isolation "worker" or "process" to have it killed instead.`,
    );
    const ending = (async () => {
      try {
        // The row says detached before anyone can read the terminal event.
        await this.store.markDetached(t.id);
      } catch (err) {
        this.#log.error({ err, task_id: t.id }, 'recording a detached handler failed');
      }
      await this.#writeEnd(a, { ok: false, error: null });
    })()
      .catch((err) => this.#log.error({ err, task_id: t.id }, 'ending a detached task failed'))
      .finally(() => this.#ending.delete(ending));
    this.#ending.add(ending);
  }

  /** Writes the one terminal event of a run and frees its slot. */
  async #writeEnd(a: Active, outcome: Outcome): Promise<void> {
    this.#flushText(a);
    const t = a.task;
    if (a.detached !== null) {
      // Another node has it (or will): nothing of this run is recorded here.
      if (this.#active.get(t.id) === a) this.#active.delete(t.id);
      // Lost: discard() untracked it. Released: its events are still being written, within
      // the window; untracked after (unless it runs here again by then).
      if (a.detached === 'released') {
        void this.#events.flush().then(() => {
          if (!this.#active.has(t.id)) this.#events.untrack(t.id);
        });
      }
      this.#events.poke(t.id);
      this.#schedulePump();
      return;
    }
    const endedAt = nowIso();
    const wasCancelling = a.state === 'cancelling';
    a.state = 'ended';
    if (a.deadlineTimer) clearTimeout(a.deadlineTimer);
    if (wasCancelling) {
      const reason = t.cancel?.reason ?? 'user';
      t.status = 'cancelled';
      t.ended_at = endedAt;
      this.#events.append(
        t.id,
        ++a.seq,
        {
          type: 'task.cancelled',
          data: { reason, output_text: t.output_text, ...(a.abandoned && { detached: true as const }) },
        },
        {
          status: 'cancelled',
          ended_at: endedAt,
        },
      );
    } else if (outcome.ok && a.failure === null) {
      const result = outcome.result === undefined ? null : outcome.result;
      t.status = 'completed';
      t.result = result;
      t.ended_at = endedAt;
      if (t.progress !== null) t.progress = 100;
      this.#events.append(
        t.id,
        ++a.seq,
        { type: 'task.completed', data: { result } },
        {
          status: 'completed',
          result,
          ended_at: endedAt,
          ...(t.progress !== null ? { progress: 100 } : {}),
        },
      );
    } else {
      const error = toTaskError(a.failure ?? (outcome.ok ? null : outcome.error));
      if (a.failure === null && !outcome.ok && !LeashError.is(outcome.error))
        this.#log.warn({ err: outcome.error, task_id: t.id }, 'task handler failed');
      t.status = 'failed';
      t.error = error;
      t.ended_at = endedAt;
      this.#events.append(
        t.id,
        ++a.seq,
        { type: 'task.failed', data: { error } },
        {
          status: 'failed',
          error,
          ended_at: endedAt,
        },
      );
    }
    await this.#events.flush();
    if (this.#active.get(t.id) === a) this.#active.delete(t.id);
    this.#events.untrack(t.id);
    if (a.detached !== null) return; // taken over while its end was being written
    const stoppedAt = a.stoppedAt ?? performance.now();
    const latency = a.cancelAskedAt === null ? null : stoppedAt - a.cancelAskedAt;
    const cleanup = a.cancelAskedAt === null ? null : performance.now() - stoppedAt;
    const reason = wasCancelling ? (t.cancel?.reason ?? 'user') : null;
    if (wasCancelling) {
      // Seed 003: one line per cancel. Whether an upstream call was closed is not known
      // here (the model client closes its request on the signal): not logged.
      this.#log.info(
        {
          task_id: t.id,
          type: t.type,
          reason,
          stage: 'running',
          stopped_ms: round(latency),
          cleanup_ms: round(cleanup),
          output_chars: t.output_text.length,
          deltas: a.deltas,
          isolation: a.isolation,
          forced: a.forced,
          detached: a.abandoned,
          // Inline only: an isolated handler's model calls have their own signal in its thread or process.
          ...(a.isolation === 'inline' && { upstream_closed: upstreamClosed(a.controller.signal) }),
        },
        'task cancelled',
      );
    }
    this.#observer.taskEnded?.(
      { ...t },
      {
        cancelLatencyMs: latency,
        cleanupMs: cleanup,
        isolation: a.isolation,
        forced: a.forced,
        detached: a.abandoned,
        cancelReason: reason,
        cancelStage: wasCancelling ? 'running' : null,
      },
    );
    this.#schedulePump();
  }

  /** A task ended `cancelled` before it ever started (a cancel of a queued task, or its deadline in the queue). */
  #endedQueued(t: Task, reason: CancelReason, stoppedMs: number): void {
    this.#log.info(
      {
        task_id: t.id,
        type: t.type,
        reason,
        stage: 'queued',
        stopped_ms: round(stoppedMs),
        output_chars: 0,
        deltas: 0,
        detached: false,
      },
      'task cancelled',
    );
    this.#observer.taskEnded?.(t, {
      cancelLatencyMs: null,
      cleanupMs: null,
      isolation: this.#defs.get(t.type)?.isolation ?? 'inline',
      forced: false,
      detached: false,
      cancelReason: reason,
      cancelStage: 'queued',
    });
  }

  /** The reaper: queued tasks past their deadline end `cancelled` (reason `deadline`). */
  async #reapQueued(): Promise<void> {
    if (this.#reaping) return;
    this.#reaping = true;
    try {
      const ended = await this.store.expireQueued(nowIso());
      this.#reapFailing = false;
      for (const t of ended) {
        this.#events.poke(t.id);
        this.#announceCrossNode(t.id);
        // stopped_ms: how long after its deadline it was ended.
        this.#endedQueued(t, 'deadline', t.deadline_at ? Date.now() - Date.parse(t.deadline_at) : 0);
      }
    } catch (err) {
      // Once per outage (the store is unreachable), not four times a second.
      if (!this.#reapFailing) this.#log.error({ err }, 'ending queued tasks past their deadline failed');
      this.#reapFailing = true;
    } finally {
      this.#reaping = false;
    }
  }

  #onRemoteCancel(payload: string): void {
    const m = decodeCancel(payload);
    if (!m) return void this.#log.warn({ payload }, 'ignored a malformed cancel notification');
    const { task_id: id, reason } = m;
    const a = this.#active.get(id);
    if (a && a.detached === null) this.#cancelLocal(id, reason);
    else if (!a) {
      // Possibly claimed by this node a moment ago; remembered briefly.
      this.#earlyCancels.set(id, reason);
      setTimeout(() => this.#earlyCancels.delete(id), 5000).unref();
    }
  }

  #announceCrossNode(id: string): void {
    if (this.store.kind !== 'sqlite') void this.store.notifier.publish('events', id).catch(() => {});
  }

  /** Heartbeat of this node's leases; acts on what the store says about its tasks. */
  async #renew(): Promise<void> {
    // Ended tasks too while their last events are being written (their lease must hold
    // until then); one reported lost after its end is ignored by #detach.
    const held = [...this.#active].filter(([, a]) => a.detached === null).map(([id]) => id);
    const r = await this.store.renewLeases(this.nodeId, this.#opts.leaseMs, nowIso(), held).catch((err: unknown) => {
      this.#renewFailing = true;
      throw err;
    });
    if (this.#renewFailing) {
      this.#renewFailing = false;
      this.#storeBackAt = Date.now();
    }
    for (const { id, reason } of r.cancelling) {
      const a = this.#active.get(id);
      if (a && a.detached === null && a.state === 'running') {
        this.#log.info({ task_id: id, reason }, 'stop request found at lease renewal (its notification was missed)');
        this.#cancelLocal(id, reason);
      }
    }
    for (const id of r.lost) this.#detach(id, 'lost', false);
  }

  /**
   * This node stops owning a running task: its handler is aborted, its unwritten
   * events dropped, and nothing more is written for it. `evenIfEnded`: the store
   * refused the task's final events, so an ended task is detached too.
   */
  #detach(id: string, why: 'lost' | 'released', evenIfEnded: boolean): void {
    const a = this.#active.get(id);
    if (!a || a.detached !== null || (a.state === 'ended' && !evenIfEnded)) return;
    a.detached = why;
    if (why === 'lost') {
      this.#events.discard(id);
      this.#log.warn(
        { task_id: id },
        'task recovered by another node after this node’s lease ran out: stopping it here',
      );
    }
    if (a.deadlineTimer) clearTimeout(a.deadlineTimer);
    if (a.graceTimer) clearTimeout(a.graceTimer);
    if (a.state !== 'ended') {
      a.state = 'ended'; // no more output, progress or cancel events from this run
      a.controller.abort(new CancelledError('shutdown'));
    }
    this.#events.poke(id);
  }

  async #reapExpired(): Promise<void> {
    // Our own leases first: a node that was slow (a stall, a database outage) must
    // not reap its own tasks before it has had the chance to renew them.
    await this.#renew();
    // Leases that ran out while the store was unreachable (a PostgreSQL restart) say
    // nothing about their nodes: none could renew. Give every node a full lease
    // after the outage to renew before judging it, or live nodes lose their tasks.
    if (Date.now() - this.#storeBackAt < this.#opts.leaseMs) return;
    const lost = await this.store.recoverLost({
      expiredBefore: nowIso(),
      resumableTypes: this.#resumableTypes(),
      now: nowIso(),
    });
    for (const t of lost) {
      this.#events.poke(t.id);
      this.#announceCrossNode(t.id);
    }
    if (lost.length > 0) this.#schedulePump();
  }

  #resumableTypes(): string[] {
    return [...this.#defs.values()].filter((d) => d.resume).map((d) => d.type);
  }
}

/** The per-task run options of a create request, checked against its type. */
function runOptions(def: AnyTaskDefinition, req: CreateTaskRequest): TaskRunOptions | null {
  const bad = (path: string, message: string): LeashError =>
    new LeashError('invalid_request', `${path} ${message}.`, { details: [{ path, message }] });
  if (req.isolation !== undefined) {
    if (!(ISOLATIONS as readonly string[]).includes(req.isolation))
      throw bad('isolation', 'must be inline, worker or process');
    if (req.isolation !== 'inline' && !def.module) {
      throw bad(
        'isolation',
        `can't be ${req.isolation} for task type "${def.type}": its definition names no module to load in isolation`,
      );
    }
  }
  if (req.grace_ms !== undefined && (!Number.isInteger(req.grace_ms) || req.grace_ms < 0 || req.grace_ms > 600_000)) {
    throw bad('grace_ms', 'must be an integer from 0 to 600000');
  }
  if (req.isolation === undefined && req.grace_ms === undefined) return null;
  return {
    ...(req.isolation !== undefined && { isolation: req.isolation }),
    ...(req.grace_ms !== undefined && { grace_ms: req.grace_ms }),
  };
}

type Outcome = { ok: true; result: unknown } | { ok: false; error: unknown };

function round(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms * 10) / 10;
}

function backlogFull(unwritten: number): LeashError {
  return new LeashError(
    'store_unavailable',
    `The store is not taking writes and ${unwritten} events wait to be written (the bound is LEASH_MAX_UNWRITTEN_EVENTS); try again when it is back.`,
  );
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

/** sha256 of type + canonical JSON (sorted keys), for the result cache. */
export function hashInput(type: string, input: unknown): string {
  return createHash('sha256').update(type).update('\0').update(canonicalJson(input)).digest('hex');
}

function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(v as object).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
}
