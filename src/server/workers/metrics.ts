// Remote-worker gauges for /metrics, read from the hub at scrape time. No owner or
// worker ids as labels (unbounded); per-owner detail is at GET /api/workers.

import { Gauge, type Registry } from 'prom-client';
import type { WorkerHub } from './hub.ts';

export function registerWorkerMetrics(registry: Registry, hub: WorkerHub): void {
  const registers = [registry];
  new Gauge({
    name: 'leash_workers_connected',
    help: 'Remote workers connected to this node.',
    registers,
    collect() {
      this.set(hub.list().filter((w) => w.connected).length);
    },
  });
  new Gauge({
    name: 'leash_worker_slots',
    help: 'Slots of the remote workers connected to this node.',
    registers,
    collect() {
      this.set(hub.list().reduce((n, w) => n + (w.connected ? w.slots : 0), 0));
    },
  });
  new Gauge({
    name: 'leash_worker_attempts',
    help: 'Tasks assigned to remote workers of this node (accepted or not yet).',
    registers,
    collect() {
      this.set(hub.list().reduce((n, w) => n + w.running.length, 0));
    },
  });
  new Gauge({
    name: 'leash_worker_tasks_waiting',
    help: 'Tasks claimed by this node that wait for a remote worker (a lost worker’s checkpointed tasks).',
    registers,
    collect() {
      this.set(hub.waiting);
    },
  });
}
