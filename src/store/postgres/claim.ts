// claimTasks on PostgreSQL is the server-side function `leash_claim` (migration 2, where
// its rules are written down): one round trip per claim, in its own implicit
// transaction, so its row and advisory locks last exactly as long as the claim.

import { addMs } from '../lease.ts';
import type { ClaimOptions, ClaimedTask } from '../store.ts';
import { unavailable, type PgDb } from './db.ts';
import { toClaimed, type PgTaskRow } from './rows.ts';

const CLAIM = 'SELECT * FROM leash_claim($1, $2, $3, $4, $5)';
/** With remote-worker types (ClaimOptions.remote, migration 8). */
const CLAIM_REMOTE = 'SELECT * FROM leash_claim($1, $2, $3, $4, $5, $6::text[], $7::text[])';

export async function claimTasks(db: PgDb, opts: ClaimOptions): Promise<ClaimedTask[]> {
  if (opts.max <= 0 || opts.maxRunningPerOwner <= 0) return [];
  const leaseUntil = addMs(opts.now, opts.leaseMs);
  for (let attempt = 0; ; attempt++) {
    try {
      const base = [opts.nodeId, opts.max, opts.maxRunningPerOwner, opts.now, leaseUntil];
      const remote = opts.remote && opts.remote.types.length > 0 ? opts.remote : null;
      const r = await db.live().query<PgTaskRow>(
        remote
          ? {
              name: 'leash_claim_remote',
              text: CLAIM_REMOTE,
              values: [...base, remote.types, remote.allow.map((p) => `${p.owner}\u001f${p.type}`)],
            }
          : { name: 'leash_claim', text: CLAIM, values: base },
      );
      return r.rows.map(toClaimed);
    } catch (e) {
      // Two claims locking owners in crossing orders: PostgreSQL aborts one; run it again.
      if ((e as { code?: string }).code !== '40P01' || attempt >= 3) throw unavailable(e);
    }
  }
}
