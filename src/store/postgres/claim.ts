// Claiming on PostgreSQL is the server-side function `leash_claim` (migration 2, where
// its rules are written down): one round trip per claim, in its own implicit
// transaction, so its row and advisory locks last exactly as long as the claim.

import type pg from 'pg';
import type { ClaimOptions, ClaimedTask, TaskRunOptions } from '../store.ts';
import { toTask, type PgTaskRow } from './rows.ts';

export type Claimed = ClaimedTask;

const CLAIM = 'SELECT * FROM leash_claim($1, $2, $3, $4, $5)';
/** With remote-worker types (ClaimOptions.remote, migration 8). */
const CLAIM_REMOTE = 'SELECT * FROM leash_claim($1, $2, $3, $4, $5, $6::text[], $7::text[])';

export async function claimWith(db: pg.Pool, opts: ClaimOptions, leaseUntil: string): Promise<Claimed[]> {
  for (let attempt = 0; ; attempt++) {
    try {
      const base = [opts.nodeId, opts.max, opts.maxRunningPerOwner, opts.now, leaseUntil];
      const remote = opts.remote && opts.remote.types.length > 0 ? opts.remote : null;
      const r = await db.query<PgTaskRow>(
        remote
          ? {
              name: 'leash_claim_remote',
              text: CLAIM_REMOTE,
              values: [...base, remote.types, remote.allow.map((p) => `${p.owner}\u001f${p.type}`)],
            }
          : { name: 'leash_claim', text: CLAIM, values: base },
      );
      return r.rows.map((row) => ({
        task: toTask(row),
        lastSeq: row.last_seq,
        checkpoint: row.checkpoint ?? null,
        options: (row.options as TaskRunOptions | null) ?? null,
      }));
    } catch (e) {
      // Two claims locking owners in crossing orders: PostgreSQL aborts one; run it again.
      if ((e as { code?: string }).code !== '40P01' || attempt >= 3) throw e;
    }
  }
}
