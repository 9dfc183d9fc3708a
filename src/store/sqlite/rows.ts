// Row types and decoding for SQLite: JSON columns are TEXT, timestamps ISO TEXT, booleans
// 0/1. The shared mapping (../rows.ts) turns them into the wire shapes.

import { rowMappers, type EventRowOf, type MessageRowOf, type TaskRowOf, type ThreadRowOf } from '../rows.ts';

export { toJson } from '../rows.ts';

interface SqliteColumns {
  num: number;
  ts: string;
  json: string;
  bool: number;
}

export type TaskRow = TaskRowOf<SqliteColumns>;
export type EventRow = EventRowOf<SqliteColumns>;
export type ThreadRow = ThreadRowOf<SqliteColumns>;
export type MessageRow = MessageRowOf<SqliteColumns>;

/** SQL NULL and JSON null both read as null. */
export const fromJson = (s: string | null): unknown => (s === null ? null : JSON.parse(s));

export const { toTask, toClaimed, toEvent, toThread, toMessage } = rowMappers<SqliteColumns>({
  iso: (s) => s,
  json: fromJson,
  metadata: (s) => JSON.parse(s) as Record<string, unknown>,
});
