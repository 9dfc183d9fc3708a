// claimTasks on SQLite: one write transaction that pages through the queue in claim
// order and starts what it may (one writer at a time, so the per-owner counts are exact).

import { addMs } from '../lease.ts';
import type { ClaimedTask, ClaimOptions } from '../store.ts';
import type { SqliteDb } from './db.ts';
import { insertEvent } from './insert-event.ts';
import { toClaimed, type TaskRow } from './rows.ts';

const RUNNING_BY_OWNER = `SELECT owner, COUNT(*) AS n FROM tasks WHERE status IN ('running', 'cancelling') GROUP BY owner`;
const START = `UPDATE tasks SET status = 'running', started_at = ?, node_id = ?, lease_until = ?,
           attempt = attempt + 1, last_seq = last_seq + 1
         WHERE id = ? AND status = 'queued' RETURNING *`;

/**
 * Queued tasks in claim order that may start now: not past their deadline (those never
 * start: the reaper ends them), not of an owner already at its limit
 * (the JSON list; omitted when empty, it costs a bloom filter) and, for a thread's
 * task, only its thread's next one (nothing running or cancelling, nothing older queued).
 */
function claimCandidatesSql(excludeOwners: boolean, remote: boolean): string {
  return `SELECT t.id, t.owner FROM tasks t
    WHERE t.status = 'queued'${excludeOwners ? `\n      AND t.owner NOT IN (SELECT value FROM json_each(?))` : ''}${
      remote
        ? `\n      AND (t.type NOT IN (SELECT value FROM json_each(?))
           OR (t.owner || char(31) || t.type) IN (SELECT value FROM json_each(?)))`
        : ''
    }
      AND (t.deadline_at IS NULL OR t.deadline_at > ?)
      AND (t.thread_id IS NULL OR (
        NOT EXISTS (SELECT 1 FROM tasks o WHERE o.thread_id = t.thread_id AND o.status IN ('running', 'cancelling'))
        AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.thread_id = t.thread_id AND o.status = 'queued' AND o.num < t.num)))
    ORDER BY t.priority DESC, t.num
    LIMIT ?`;
}
const CANDIDATES = [
  claimCandidatesSql(false, false),
  claimCandidatesSql(true, false),
  claimCandidatesSql(false, true),
  claimCandidatesSql(true, true),
] as const;

export function claimTasks(db: SqliteDb, opts: ClaimOptions): ClaimedTask[] {
  if (opts.max <= 0 || opts.maxRunningPerOwner <= 0) return [];
  const leaseUntil = addMs(opts.now, opts.leaseMs);
  const pageSize = Math.min(256, opts.max + 16);
  return db.tx(() => {
    const running = new Map<string, number>();
    const saturated: string[] = [];
    const counts = db.q(RUNNING_BY_OWNER).all() as Array<{ owner: string; n: number }>;
    for (const { owner, n } of counts) {
      running.set(owner, n);
      if (n >= opts.maxRunningPerOwner) saturated.push(owner);
    }

    // Candidates in claim order, already excluding saturated owners and any thread
    // task that is not its thread's next one (thread busy, or an older task queued).
    // So a thread contributes at most one candidate, and the only thing that can
    // change within this call is an owner reaching its limit: that owner joins
    // `saturated` and the next page query excludes it. Every page therefore makes
    // progress, and no statement scans rows it already rejected.
    // Remote-worker types: claimable only for the owners a worker here can serve.
    const remote =
      opts.remote && opts.remote.types.length > 0
        ? [JSON.stringify(opts.remote.types), JSON.stringify(opts.remote.allow.map((p) => `${p.owner}\u001f${p.type}`))]
        : null;
    const page = (): Array<{ id: string; owner: string }> => {
      const sql = CANDIDATES[(saturated.length === 0 ? 0 : 1) + (remote ? 2 : 0)]!;
      const args: Array<string | number> = saturated.length === 0 ? [] : [JSON.stringify(saturated)];
      if (remote) args.push(...remote);
      return db.q(sql).all(...args, opts.now, pageSize) as Array<{ id: string; owner: string }>;
    };
    const start = db.q(START);
    const out: ClaimedTask[] = [];
    while (out.length < opts.max) {
      const rows = page();
      const progressBefore = out.length + saturated.length;
      for (const c of rows) {
        if (out.length >= opts.max) break;
        const n = running.get(c.owner) ?? 0;
        if (n >= opts.maxRunningPerOwner) continue;
        const row = start.get(opts.now, opts.nodeId, leaseUntil, c.id) as TaskRow | undefined;
        if (!row) continue;
        insertEvent(db, row.id, row.last_seq, 'task.started', JSON.stringify({ attempt: row.attempt }), opts.now);
        out.push(toClaimed(row));
        running.set(c.owner, n + 1);
        if (n + 1 >= opts.maxRunningPerOwner) saturated.push(c.owner);
      }
      // A full page that neither claimed nor saturated anything would come back identical.
      if (rows.length < pageSize || out.length + saturated.length === progressBefore) break;
    }
    return out;
  });
}
