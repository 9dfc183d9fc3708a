// The frames of the remote-worker protocol (docs/workers.md), validated with zod.
// Worker → server frames are strict: an unknown field is a bad frame (an `error`
// frame answers it; the socket stays open).

import { z } from 'zod';

export const WORKERS_CONNECT_PATH = '/api/workers/connect';
export const TYPE_NAME_RE = /^[a-z][a-z0-9_.-]{0,63}$/;

const attemptId = z.string().min(1).max(64);
const fence = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
/** The worker's own id for an event or finish: a retry with the same id is applied once. */
const clientId = z.string().min(1).max(64);

export const helloFrame = z
  .strictObject({
    type: z.literal('hello'),
    types: z.array(z.string().regex(TYPE_NAME_RE, 'must match /^[a-z][a-z0-9_.-]{0,63}$/')).min(1).max(64),
    slots: z.number().int().min(1).max(1024),
    running: z
      .array(z.strictObject({ attempt: attemptId, fence }))
      .max(1024)
      .optional(),
    /** A JSON Schema (an object) for the input of some of `types`: creates are checked against it. */
    schemas: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
    sdk: z.string().max(100).optional(),
  })
  .superRefine((h, ctx) => {
    for (const t of Object.keys(h.schemas ?? {})) {
      if (!h.types.includes(t)) ctx.addIssue({ code: 'custom', path: ['schemas', t], message: 'is not one of types' });
    }
  });

const eventBase = { type: z.literal('event'), id: clientId, attempt: attemptId, fence };
export const eventFrame = z.discriminatedUnion('kind', [
  z.strictObject({
    ...eventBase,
    kind: z.literal('progress'),
    progress: z.number().min(0).max(100).nullable(),
    message: z.string().max(1000).nullable().optional(),
  }),
  z.strictObject({
    ...eventBase,
    kind: z.literal('output'),
    text: z
      .string()
      .min(1)
      .max(256 * 1024),
  }),
  z.strictObject({ ...eventBase, kind: z.literal('checkpoint'), state: z.unknown() }),
]);

export const finishFrame = z
  .strictObject({
    type: z.literal('finish'),
    id: clientId,
    attempt: attemptId,
    fence,
    result: z.unknown().optional(),
    error: z
      .strictObject({
        code: z.string().max(64).optional(),
        message: z.string().max(4000),
        cancelled: z.boolean().optional(),
      })
      .optional(),
  })
  .refine((f) => !(f.result !== undefined && f.error !== undefined), 'give result or error, not both');

export const workerFrame = z.union([
  helloFrame,
  z.strictObject({ type: z.literal('accept'), attempt: attemptId, fence }),
  eventFrame,
  finishFrame,
  z.strictObject({ type: z.literal('cancel_ack'), attempt: attemptId }),
  /** Shutting down: no new assignments; its running attempts finish as usual. */
  z.strictObject({ type: z.literal('drain') }),
  z.strictObject({ type: z.literal('ping') }),
  z.strictObject({ type: z.literal('pong') }),
]);

export type HelloFrame = z.infer<typeof helloFrame>;
export type EventFrame = z.infer<typeof eventFrame>;
export type FinishFrame = z.infer<typeof finishFrame>;
export type WorkerFrame = z.infer<typeof workerFrame>;

/** Server → worker. */
export type ServerFrame =
  | {
      type: 'welcome';
      worker_id: string;
      ping_ms: number;
      lease_ms: number;
      accept_ms: number;
      kept: string[];
    }
  | {
      type: 'assign';
      attempt: string;
      fence: number;
      task: {
        id: string;
        type: string;
        input: unknown;
        deadline_at: string | null;
        resume_state: unknown;
      };
    }
  | {
      type: 'ack';
      id: string;
      attempt: string;
      applied: boolean;
      /** Event acks: the seq of the event it became (null: dropped). Finish acks have none. */
      seq?: number | null;
      duplicate?: true;
    }
  | { type: 'cancel'; attempt: string; reason: string }
  | { type: 'error'; error: { code: string; message: string; details?: unknown }; attempt?: string; id?: string }
  | { type: 'ping' }
  | { type: 'pong' };

/** What a worker is told when it names an attempt that is not (or no longer) its own. */
export function fencedFrames(attempt: string, id?: string): ServerFrame[] {
  return [
    {
      type: 'error',
      attempt,
      ...(id !== undefined && { id }),
      error: { code: 'fenced', message: `Attempt ${attempt} is no longer this worker's: stop it.` },
    },
    { type: 'cancel', attempt, reason: 'fenced' },
  ];
}

/** A worker as `GET /api/workers` lists it (the client SDK's `WorkerInfo`). */
export type { WorkerInfo } from '../../core/types.ts';
