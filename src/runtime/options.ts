// What a Runtime is made with and what it tells: its options, the observer's hooks
// (metrics), and the task as `get` returns it. Re-exported by runtime.ts.

import type { Logger } from 'pino';
import type { ModelRegistry } from '../models/model.ts';
import type { Store } from '../store/store.ts';
import type { CancelReason, Isolation, Task } from '../core/types.ts';
import type { AnyTaskDefinition } from './define-task.ts';

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
   * How often streamed events are committed at most (ms), growing up to 5× while many
   * tasks stream (event-log.ts maxBatchWindowMs). Readers on this node have them from
   * memory at once either way; fewer, larger commits cost the store less.
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

/** The limits of one node, defaults filled in. */
export type Limits = Required<
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

export function limitsOf(opts: RuntimeOptions): Limits {
  return {
    concurrency: opts.concurrency ?? 64,
    maxRunningPerOwner: opts.maxRunningPerOwner ?? 4,
    maxQueuedPerOwner: opts.maxQueuedPerOwner ?? 1000,
    defaultDeadlineMs: opts.defaultDeadlineMs ?? 60 * 60_000,
    retentionMs: opts.retentionMs ?? 7 * 24 * 3_600_000,
    shutdownGraceMs: opts.shutdownGraceMs ?? 10_000,
    leaseMs: opts.leaseMs ?? 30_000,
  };
}

/**
 * The task types a node runs, with the operator's overrides applied. Throws on a type
 * registered twice, an override for no type, and isolation for a type with no module.
 */
export function taskTypesOf(
  tasks: AnyTaskDefinition[],
  overrides: Record<string, TypeOverride> = {},
): Map<string, AnyTaskDefinition> {
  const defs = new Map<string, AnyTaskDefinition>();
  for (const type of Object.keys(overrides)) {
    if (type !== '*' && !tasks.some((d) => d.type === type)) {
      throw new TypeError(`No task type "${type}" to set options for (known: ${tasks.map((d) => d.type).join(', ')})`);
    }
  }
  for (const task of tasks) {
    if (defs.has(task.type)) throw new TypeError(`Task type "${task.type}" is registered twice`);
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
    defs.set(def.type, def);
  }
  return defs;
}

export type TaskWithProgress = Task & {
  recent_progress: Array<{ progress: number | null; message: string | null; at: string }>;
};
