// Prometheus metrics on a private Registry (never the global one, so several
// servers in one process — tests, benchmarks — don't collide). Label values are
// bounded sets only: statuses, task types, methods, route patterns. Never owner
// ids or task ids.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RuntimeObserver, TaskEndInfo } from '../runtime/runtime.ts';
import type { Task, TaskStatus } from '../core/types.ts';
import { TASK_STATUSES } from '../core/types.ts';

export const CANCEL_LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];
export const PICKUP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export type StatusCounts = Record<TaskStatus, number>;

export interface Metrics {
  registry: Registry;
  /** Give this to the Runtime: it reports task starts and ends through it. */
  observer: RuntimeObserver;
  /** Where the task gauges read their numbers at scrape time (runtime.countByStatus). */
  setCountSource(fn: () => Promise<StatusCounts>): void;
  /** One finished HTTP request; `route` is the route pattern, or `unmatched`. */
  recordRequest(method: string, route: string, status: number): void;
  contentType: string;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  let source: (() => Promise<StatusCounts>) | null = null;
  // The three gauges are collected concurrently during one scrape; share one query.
  let inflight: Promise<StatusCounts | null> | null = null;
  const counts = (): Promise<StatusCounts | null> => {
    if (source === null) return Promise.resolve(null);
    inflight ??= source()
      .catch(() => null) // a failing store must not fail the whole scrape
      .finally(() => {
        inflight = null;
      });
    return inflight;
  };

  new Gauge({
    name: 'leash_tasks',
    help: 'Tasks in the store by status.',
    labelNames: ['status'] as const,
    registers,
    async collect() {
      const c = await counts();
      if (c === null) return;
      for (const s of TASK_STATUSES) this.set({ status: s }, c[s] ?? 0);
    },
  });
  new Gauge({
    name: 'leash_tasks_running',
    help: 'Tasks whose work is running (status running or cancelling).',
    registers,
    async collect() {
      const c = await counts();
      if (c !== null) this.set((c.running ?? 0) + (c.cancelling ?? 0));
    },
  });
  new Gauge({
    name: 'leash_queue_depth',
    help: 'Tasks waiting to start (status queued).',
    registers,
    async collect() {
      const c = await counts();
      if (c !== null) this.set(c.queued ?? 0);
    },
  });

  const started = new Counter({
    name: 'leash_tasks_started_total',
    help: 'Tasks started on this node, by type.',
    labelNames: ['type'] as const,
    registers,
  });
  const ended = new Counter({
    name: 'leash_tasks_ended_total',
    help: 'Tasks ended on this node, by type and terminal status.',
    labelNames: ['type', 'status'] as const,
    registers,
  });
  const pickup = new Histogram({
    name: 'leash_pickup_seconds',
    help: 'Time from creation to start of a task.',
    buckets: PICKUP_BUCKETS,
    registers,
  });
  const cancelLatency = new Histogram({
    name: 'leash_cancel_latency_seconds',
    help: 'Time from a cancel request to the work of a running task having stopped (handler returned, its worker/process killed, or the handler detached), by isolation, outcome (cooperative: the handler honoured its signal; forced: killed after its grace; detached: an inline handler left running after its grace) and reason. Cancels of queued tasks are not in it (leash_cancels_total{stage="queued"}).',
    labelNames: ['isolation', 'outcome', 'reason'] as const,
    buckets: CANCEL_LATENCY_BUCKETS,
    registers,
  });
  const cancelCleanup = new Histogram({
    name: 'leash_cancel_cleanup_seconds',
    help: 'Time from the work of a cancelled task having stopped to its terminal event being stored, by reason.',
    labelNames: ['reason'] as const,
    buckets: CANCEL_LATENCY_BUCKETS,
    registers,
  });
  const cancels = new Counter({
    name: 'leash_cancels_total',
    help: 'Tasks ended cancelled on this node, by reason and stage (queued: it never started; running).',
    labelNames: ['reason', 'stage'] as const,
    registers,
  });
  const detached = new Counter({
    name: 'leash_tasks_detached_total',
    help: 'Inline handlers that ignored their cancel past their grace and were left running (their task ended cancelled, cancel.detached), by type.',
    labelNames: ['type'] as const,
    registers,
  });
  const httpRequests = new Counter({
    name: 'leash_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });

  const observer: RuntimeObserver = {
    taskStarted(task: Task, pickupMs: number) {
      started.inc({ type: task.type });
      if (Number.isFinite(pickupMs) && pickupMs >= 0) pickup.observe(pickupMs / 1000);
    },
    taskEnded(task: Task, info: TaskEndInfo) {
      ended.inc({ type: task.type, status: task.status });
      if (info.detached) detached.inc({ type: task.type });
      const reason = info.cancelReason;
      if (reason === null || info.cancelStage === null) return;
      cancels.inc({ reason, stage: info.cancelStage });
      const ms = info.cancelLatencyMs;
      if (ms !== null && Number.isFinite(ms) && ms >= 0) {
        const outcome = info.detached ? 'detached' : info.forced ? 'forced' : 'cooperative';
        cancelLatency.observe({ isolation: info.isolation, outcome, reason }, ms / 1000);
      }
      const cleanup = info.cleanupMs;
      if (cleanup !== null && Number.isFinite(cleanup) && cleanup >= 0)
        cancelCleanup.observe({ reason }, cleanup / 1000);
    },
  };

  return {
    registry,
    observer,
    contentType: registry.contentType,
    setCountSource(fn) {
      source = fn;
    },
    recordRequest(method, route, status) {
      httpRequests.inc({ method, route, status: String(status) });
    },
  };
}
