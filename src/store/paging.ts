// Page cursors and limits, the same for every store.

import { LeashError } from '../core/errors.ts';
import type { Page } from '../core/types.ts';

/** What a cursor pages: tasks, threads, or a thread's messages (`num` is then the message seq). */
export type CursorKind = 't' | 'h' | 'm';

/** Opaque page cursors: base64url of `<kind>:<num>`, so a task cursor is refused for threads. */
export function encodeCursor(kind: CursorKind, num: number): string {
  return Buffer.from(`${kind}:${num}`).toString('base64url');
}

/** The `num` in a cursor, or null when the cursor is not one of ours. */
export function decodeCursor(kind: CursorKind, cursor: string): number | null {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const m = /^([thm]):(\d{1,15})$/.exec(text);
  if (!m || m[1] !== kind) return null;
  return Number(m[2]);
}

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 200;

export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_PAGE_LIMIT;
  return Math.min(MAX_PAGE_LIMIT, Math.max(1, Math.floor(limit)));
}

/** The `num` a page starts below: every row without a cursor; a foreign cursor is a bad request. */
export function pageStart(kind: CursorKind, cursor: string | undefined): number {
  if (cursor === undefined || cursor === '') return Number.MAX_SAFE_INTEGER;
  const n = decodeCursor(kind, cursor);
  if (n === null) throw new LeashError('invalid_request', 'invalid cursor', { details: { cursor } });
  return n;
}

/** A page from up to `limit + 1` rows, newest first: the extra row only says there is more. */
export function pageOf<R extends { num: number | string }, T>(
  rows: R[],
  limit: number,
  kind: CursorKind,
  map: (r: R) => T,
): Page<T> {
  const more = rows.length > limit;
  if (more) rows.length = limit;
  return { data: rows.map((r) => map(r)), next_cursor: more ? encodeCursor(kind, Number(rows.at(-1)!.num)) : null };
}

/** A caller's row limit as SQL takes it (a whole number, at least 0; unlike a page limit, not capped). */
export const rowLimit = (limit: number): number => Math.max(0, Math.floor(limit));
