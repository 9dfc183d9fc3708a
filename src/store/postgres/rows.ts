// Row types and decoding for PostgreSQL. node-postgres hands back timestamptz as Date,
// bigint as string and json already parsed; the shared mapping (../rows.ts) turns them
// into the wire shapes.

import { rowMappers, type EventRowOf, type MessageRowOf, type TaskRowOf, type ThreadRowOf } from '../rows.ts';

export { toJson } from '../rows.ts';

interface PgColumns {
  num: string;
  ts: Date;
  json: unknown;
  bool: boolean;
}

export type PgTaskRow = TaskRowOf<PgColumns>;
export type PgEventRow = EventRowOf<PgColumns>;
export type PgThreadRow = ThreadRowOf<PgColumns>;
export type PgMessageRow = MessageRowOf<PgColumns>;

/**
 * PostgreSQL text cannot hold U+0000 (SQLite can). Text columns get U+FFFD instead;
 * json columns keep the escaped `\u0000` as written, so event data is exact.
 */
export const pgText = (s: string): string => (s.includes('\0') ? s.replaceAll('\0', '\uFFFD') : s);

export const { toTask, toClaimed, toEvent, toThread, toMessage } = rowMappers<PgColumns>({
  iso: (d) => d.toISOString(),
  json: (v) => v ?? null, // already parsed by the driver
  metadata: (v) => (v ?? {}) as Record<string, unknown>,
});
