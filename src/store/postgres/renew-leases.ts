// renewLeases on PostgreSQL: one UPDATE over the held ids.

import type { CancelReason, TaskStatus } from '../../core/types.ts';
import { addMs, leaseRenewalOf } from '../lease.ts';
import type { LeaseRenewal } from '../store.ts';
import type { PgDb } from './db.ts';

const RENEW = `UPDATE tasks SET lease_until = $2
         WHERE node_id = $1 AND status IN ('running', 'cancelling') AND id = ANY($3::text[])
         RETURNING id, status, cancel_reason`;

export async function renewLeases(
  db: PgDb,
  nodeId: string,
  leaseMs: number,
  now: string,
  held: readonly string[] = [],
): Promise<LeaseRenewal> {
  const rows = (
    await db.q<{ id: string; status: TaskStatus; cancel_reason: CancelReason | null }>(
      RENEW,
      [nodeId, addMs(now, leaseMs), held],
      'leash_renew',
    )
  ).rows;
  return leaseRenewalOf(rows, held);
}
