// The task types remote workers declared, on SQLite (docs/workers.md): known again
// after a restart, per owner. A declaration without a schema keeps the stored one.

import type { RemoteTypeRow } from '../store.ts';
import type { SqliteDb } from './db.ts';

export function saveRemoteType(db: SqliteDb, owner: string, type: string, schema: string | null, now: string): void {
  db.q(
    `INSERT INTO remote_types (owner, type, input_schema, declared_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (owner, type) DO UPDATE SET input_schema = COALESCE(excluded.input_schema, remote_types.input_schema),
       declared_at = excluded.declared_at`,
  ).run(owner, type, schema, now);
}

export function listRemoteTypes(db: SqliteDb): RemoteTypeRow[] {
  const rows = db
    .q('SELECT owner, type, input_schema AS schema FROM remote_types ORDER BY type, owner')
    .all() as unknown as RemoteTypeRow[];
  // Plain objects, as the store thread's answers are (node:sqlite's rows have no prototype).
  return rows.map((r) => ({ owner: r.owner, type: r.type, schema: r.schema }));
}
