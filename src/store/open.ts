// One place that turns LEASH_DB / --db into a Store: a file path (or `sqlite:` URL)
// is the embedded SQLite store; a `postgres://` / `postgresql://` URL is PostgreSQL,
// for several nodes sharing one database.

import { LeashError } from '../core/errors.ts';
import { PostgresStore, type PostgresStoreOptions } from './postgres/postgres-store.ts';
import { SqliteStore } from './sqlite/sqlite-store.ts';
import { SqliteWorkerStore } from './sqlite/worker-store.ts';
import type { Store } from './store.ts';

export type StoreKind = 'sqlite' | 'postgres';

/** Which store a LEASH_DB value names, and what to open (path or URL). */
export function parseStoreUrl(url: string): { kind: StoreKind; target: string } {
  const v = url.trim();
  if (v === '') throw new LeashError('invalid_request', 'the database location is empty');
  if (/^postgres(ql)?:\/\//i.test(v)) return { kind: 'postgres', target: v };
  if (/^sqlite:/i.test(v)) {
    // sqlite:./leash.db, sqlite:///abs/path.db, sqlite::memory:
    const rest = v.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (rest === '') throw new LeashError('invalid_request', `no file in "${url}"`);
    return { kind: 'sqlite', target: rest };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) {
    throw new LeashError(
      'invalid_request',
      `unsupported database URL "${v.split('://')[0]}://…": use a file path or postgres://`,
    );
  }
  return { kind: 'sqlite', target: v };
}

export interface OpenStoreOptions extends PostgresStoreOptions {
  /**
   * SQLite on a thread of its own (default), so its synchronous writes never hold up
   * the event loop; false runs it on the caller's thread (LEASH_SQLITE_THREAD=0).
   */
  sqliteThread?: boolean;
}

/** Opens (does not migrate) the store `url` names. */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const { kind, target } = parseStoreUrl(url);
  if (kind === 'postgres') return PostgresStore.open(target, opts);
  return opts.sqliteThread === false ? SqliteStore.open(target) : SqliteWorkerStore.open(target);
}
