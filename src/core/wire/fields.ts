// Field schemas shared by every wire schema (HTTP bodies and queries, WebSocket
// frames), so a bound — an id's length, the longest deadline, a page size — is
// written once and is the same on every surface.

import { z } from 'zod';

export const MAX_IDEMPOTENCY_KEY = 255;
/** Longest message a thread run (or an OpenAI request) may carry, in characters. */
export const MAX_MESSAGE_CHARS = 1_000_000;

/** The id in a route's path (`/api/tasks/:id`): anything longer names nothing that exists. */
export const idParams = z.object({ id: z.string().min(1).max(128) });
export const taskIdField = z.string().min(1).max(128);
export const taskTypeField = z.string().min(1).max(64);
export const threadIdField = z.string().min(1).max(255);
export const onDisconnectField = z.enum(['cancel', 'continue']);
/** At most a week. */
export const deadlineMsField = z
  .number()
  .int()
  .positive()
  .max(7 * 24 * 3600 * 1000);
export const idempotencyKeyField = z
  .string()
  .min(1)
  .max(MAX_IDEMPOTENCY_KEY)
  .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces only');
/** `?limit=&cursor=` of the list routes (the stores cap a page at 200). */
export const pageQuery = {
  limit: z.coerce.number<number | string>().int().min(1).max(200).optional(),
  cursor: z.string().min(1).max(1024).optional(),
};
/** `?flag=true|false|1|0`. */
export const boolQuery = z.enum(['true', 'false', '1', '0']).transform((s) => s === 'true' || s === '1');

/**
 * `a,b` or repeated `?k=a&k=b` (or a JSON array in a body) → ['a','b']. The input type
 * says what a typed caller sends (one item or a list); JSON Schema shows the array.
 */
export const listOf = <T extends z.ZodType>(item: T) =>
  z
    .preprocess((v: z.input<T> | Array<z.input<T>>) => {
      if (v === undefined) return undefined;
      const arr: unknown[] = Array.isArray(v) ? v : [v];
      return arr.flatMap((x) =>
        typeof x === 'string'
          ? x
              .split(',')
              .map((s) => s.trim())
              .filter((s) => s !== '')
          : [x],
      );
    }, z.array(item).min(1))
    .describe('One value, a comma-separated list, or the key repeated');
