// The task types remote workers declared, on PostgreSQL (docs/workers.md): every node
// reads them, so an owner's create of one works on each. Per owner. A declaration
// without a schema keeps the stored one.

import type { RemoteTypeRow } from '../store.ts';
import type { PgDb } from './db.ts';

export async function saveRemoteType(
  db: PgDb,
  owner: string,
  type: string,
  schema: string | null,
  now: string,
): Promise<void> {
  await db.q(
    `INSERT INTO remote_types (owner, type, input_schema, declared_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (owner, type) DO UPDATE SET input_schema = COALESCE(EXCLUDED.input_schema, remote_types.input_schema),
       declared_at = EXCLUDED.declared_at`,
    [owner, type, schema, now],
  );
}

export async function listRemoteTypes(db: PgDb): Promise<RemoteTypeRow[]> {
  return (
    await db.q<RemoteTypeRow>('SELECT owner, type, input_schema AS schema FROM remote_types ORDER BY type, owner')
  ).rows;
}
