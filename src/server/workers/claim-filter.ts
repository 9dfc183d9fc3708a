// Built from the hub's records: what this node may claim of the remote types, and the
// workers as `GET /api/workers` lists them.

import type { WorkerInfo } from './protocol.ts';
import type { Job, WorkerRecord } from './records.ts';

/**
 * What this node may claim of the remote types `types` (null: none): an (owner, type)
 * pair only while a worker here serves it with a slot not yet spoken for (by a job
 * already waiting here). Other remote tasks stay queued (for a worker that connects
 * here or on another node).
 */
export function claimFilter(
  types: string[] | null,
  workers: Iterable<WorkerRecord>,
  waiting: readonly Job[],
): { types: string[]; allow: Array<{ owner: string; type: string }> } | undefined {
  if (types === null) return undefined;
  const free = new Map<string, number>();
  const key = (owner: string, type: string): string => `${owner}\u001f${type}`;
  for (const w of workers) {
    if (w.link === null || w.draining) continue;
    const n = w.slots - w.attempts.size;
    if (n <= 0) continue;
    for (const t of w.types) free.set(key(w.owner, t), (free.get(key(w.owner, t)) ?? 0) + n);
  }
  for (const j of waiting) {
    const k = key(j.owner, j.type);
    if (free.has(k)) free.set(k, free.get(k)! - 1);
  }
  const allow: Array<{ owner: string; type: string }> = [];
  for (const [k, n] of free) {
    if (n <= 0) continue;
    const [owner, type] = k.split('\u001f') as [string, string];
    allow.push({ owner, type });
  }
  return { types, allow };
}

export function workerInfo(w: WorkerRecord): WorkerInfo {
  return {
    id: w.id,
    owner: w.owner,
    connected: w.link !== null,
    connected_at: w.connectedAt,
    last_seen_at: new Date(w.lastSeen).toISOString(),
    sdk: w.sdk,
    types: [...w.types],
    slots: w.slots,
    running: [...w.attempts.values()].map((a) => ({
      attempt: a.id,
      task_id: a.job.taskId,
      accepted: a.accepted,
      cancelling: a.cancel !== null,
    })),
  };
}
