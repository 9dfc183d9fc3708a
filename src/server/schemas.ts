// Field schemas shared by the HTTP routes and the WebSocket frames, so a bound
// (an id's length, the longest deadline, a page size) is the same everywhere.

import { z } from 'zod';

export const threadIdField = z.string().min(1).max(255);
export const onDisconnectField = z.enum(['cancel', 'continue']);
/** At most a week. */
export const deadlineMsField = z
  .number()
  .int()
  .positive()
  .max(7 * 24 * 3600 * 1000);
/** `?limit=&cursor=` of the list routes (the stores cap a page at 200). */
export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(200).optional(),
  cursor: z.string().min(1).max(1024).optional(),
};
