// The thread calls of SPEC §2, defined once (see tasks.ts for how they are used).

import { z } from 'zod';
import { MULTITASK_STRATEGIES } from '../types.ts';
import { deadlineMsField, MAX_MESSAGE_CHARS, onDisconnectField, pageQuery } from './fields.ts';

export const DEFAULT_MESSAGE_PAGE = 100;
export const MAX_MESSAGE_PAGE = 1000;

/** `POST /api/threads`. */
export const createThreadBody = z.strictObject({ metadata: z.record(z.string(), z.unknown()).optional() });
/** `GET /api/threads`. */
export const listThreadsQuery = z.object(pageQuery);
/** `GET /api/threads/:id/messages`. */
export const messagesQuery = z.object({
  limit: z.coerce.number<number | string>().int().min(1).max(MAX_MESSAGE_PAGE).optional(),
  cursor: pageQuery.cursor,
});

/** What a thread run is: the part every surface (HTTP, WebSocket) takes. */
export const threadRunSpec = z.strictObject({
  content: z.string().min(1, 'must not be empty').max(MAX_MESSAGE_CHARS),
  model: z.string().min(1).max(200).optional().describe('A model the server allows (default: its default model)'),
  multitask: z
    .enum(MULTITASK_STRATEGIES)
    .optional()
    .describe('What to do with a run already active in the thread (default `interrupt`)'),
  system: z.string().max(100_000).optional(),
  deadline_ms: deadlineMsField.optional(),
  max_tokens: z.number().int().positive().max(1_000_000).optional(),
  temperature: z.number().min(0).max(2).optional(),
});

export type ThreadRunRequest = z.output<typeof threadRunSpec>;

/** The run request alone, out of a body or frame that carries more (stream, request_id, …). */
export function threadRunOf(spec: ThreadRunRequest): ThreadRunRequest {
  return {
    content: spec.content,
    ...(spec.model !== undefined && { model: spec.model }),
    ...(spec.multitask !== undefined && { multitask: spec.multitask }),
    ...(spec.system !== undefined && { system: spec.system }),
    ...(spec.deadline_ms !== undefined && { deadline_ms: spec.deadline_ms }),
    ...(spec.max_tokens !== undefined && { max_tokens: spec.max_tokens }),
    ...(spec.temperature !== undefined && { temperature: spec.temperature }),
  };
}

/** `POST /api/threads/:id/runs` (the idempotency key comes as the `Idempotency-Key` header). */
export const threadRunBody = threadRunSpec.extend({
  stream: z.boolean().optional().describe('Answer with the run’s event stream (SSE) at once'),
  on_disconnect: onDisconnectField.optional().describe('Streamed runs: `cancel` (default) or `continue`'),
});
