// The task types remote workers declared, on SQLite (docs/workers.md): known again
// after a restart. A declaration without a schema keeps the stored one.

import type { RemoteTypeRow } from '../store.ts';
import type { SqliteDb } from './db.ts';

export function saveRemoteType(db: SqliteDb, type: string, schema: string | null, now: string): void {
  db.q(
    `INSERT INTO remote_types (type, input_schema, declared_at) VALUES (?, ?, ?)
     ON CONFLICT (type) DO UPDATE SET input_schema = COALESCE(excluded.input_schema, remote_types.input_schema),
       declared_at = excluded.declared_at`,
  ).run(type, schema, now);
}

export function listRemoteTypes(db: SqliteDb): RemoteTypeRow[] {
  return db
    .q('SELECT type, input_schema AS schema FROM remote_types ORDER BY type')
    .all() as unknown as RemoteTypeRow[];
}
