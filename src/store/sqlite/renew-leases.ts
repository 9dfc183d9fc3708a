// renewLeases on SQLite: one UPDATE over the held ids (looked up one by one by id).

import type { CancelReason, TaskStatus } from '../../core/types.ts';
import { addMs, leaseRenewalOf } from '../lease.ts';
import type { LeaseRenewal } from '../store.ts';
import type { SqliteDb } from './db.ts';

const RENEW = `UPDATE tasks SET lease_until = ?
       WHERE node_id = ? AND status IN ('running', 'cancelling') AND id IN (SELECT value FROM json_each(?))
       RETURNING id, status, cancel_reason`;

export function renewLeases(
  db: SqliteDb,
  nodeId: string,
  leaseMs: number,
  now: string,
  held: readonly string[] = [],
): LeaseRenewal {
  const renewed = db.q(RENEW).all(addMs(now, leaseMs), nodeId, JSON.stringify(held)) as Array<{
    id: string;
    status: TaskStatus;
    cancel_reason: CancelReason | null;
  }>;
  return leaseRenewalOf(renewed, held);
}
