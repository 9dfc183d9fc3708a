// Task types are plain objects registered with the runtime:
//   defineTask({ type: 'generate', input: z.object({...}), run: async (input, ctx) => result })
// The runtime validates input with the zod schema before anything is stored.

import type { z } from 'zod';
import type { Logger } from 'pino';
import type { ModelRegistry } from '../models/model.ts';
import type { Store } from '../store/store.ts';
import { ENV_NAME } from './isolation/env.ts';
import type { Isolation } from '../core/types.ts';

export interface TaskContext {
  readonly taskId: string;
  readonly owner: string;
  readonly threadId: string | null;
  /** Fires on cancel, deadline or shutdown; its reason is a CancelledError. Pass it unchanged to fetch / model calls. */
  readonly signal: AbortSignal;
  /** When the runtime will cancel the task with reason `deadline`. */
  readonly deadline: Date | null;
  /** The state saved by the last `checkpoint()` of an earlier attempt (types with `resume: true`). */
  readonly resumeState: unknown;
  /** 0–100 (or null for indeterminate) and a short human message. Dropped once the task is cancelling. */
  progress(percent: number | null, message?: string): void;
  /** Streams output text (`output.delta`). Dropped once the task is cancelling: returns whether it was kept. */
  emit(text: string): boolean;
  /** Persists resumable state; on a restart after a crash the task re-runs with it as `resumeState`. */
  checkpoint(state: unknown): Promise<void>;
  readonly models: ModelRegistry;
  readonly store: Store;
  readonly log: Logger;
}

export interface TaskDefinition<S extends z.ZodType = z.ZodType, R = unknown> {
  type: string;
  /** zod schema of the input; errors become 400 `invalid_request` with per-field details. */
  input: S;
  run(input: z.output<S>, ctx: TaskContext): Promise<R>;
  description?: string;
  /**
   * The model names an input will use, checked against the server's model allowlist
   * when the task is created (400 `model_not_allowed`, before anything is stored).
   * Default: the input's `model` field when it is a string (what the built-in types
   * pass to `ctx.models.resolve`). `ctx.models.resolve` checks again when the task runs.
   */
  models?(input: z.output<S>): (string | undefined)[];
  /**
   * A type not every owner has (remote workers' types are their owner's: docs/workers.md):
   * the input schema for `owner`, or null when `owner` has no such type (a create answers
   * 400 `unknown_task_type`, and the type is left out of the known types it lists).
   * Without it the type is everyone's, with `input`.
   */
  forOwner?(owner: string): z.ZodType | null;
  /** Default deadline for tasks of this type (ms). Nothing runs forever: the runtime has a global default too. */
  deadlineMs?: number;
  /** Re-queue from the last checkpoint after a crash instead of failing with `node_lost`. */
  resume?: boolean;
  /** A create with the same owner, type and input within `ttlMs` answers with the completed task. */
  cache?: { ttlMs: number };
  /**
   * Where the handler runs. `inline` (default): in the server's event loop; it
   * must honour `ctx.signal`: a handler that has not returned `graceMs` after it is
   * detached — its task ends `cancelled` with `cancel.detached: true` and whatever it
   * does later is dropped, but it keeps running. `worker` (a pooled worker thread) and
   * `process` (a pooled child process): the signal fires first, and if the handler has
   * not returned within `graceMs` its thread or process is killed.
   * Isolated handlers need `module`; their `ctx.store` offers only the reads and
   * conversation writes of ISOLATED_STORE_CALLS (run by the parent).
   */
  isolation?: Isolation;
  /** `import.meta.url` of the module exporting this definition (required unless inline). */
  module?: string;
  /**
   * How long after the signal a handler may take to return (default 2000 ms) before it
   * is killed (isolated) or detached (inline). A create's `grace_ms` overrides it.
   */
  graceMs?: number;
  /** V8 heap limit of an isolated handler (default 512 MB); past it the task fails `out_of_memory`. */
  memoryLimitMb?: number;
  /**
   * Environment variables an isolated handler gets beyond the default allowlist
   * (PATH, HOME, locale, TZ, temp dirs, NODE_* — see src/runtime/isolation/env.ts),
   * e.g. `['OPENAI_API_KEY']` for a handler that calls OpenAI. Nothing else of the
   * server's environment (API keys, database URL, provider keys) reaches it.
   * Inline handlers share the server's process and see everything.
   */
  env?: readonly string[];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTaskDefinition = TaskDefinition<any, any>;

export function defineTask<S extends z.ZodType, R>(def: TaskDefinition<S, R>): TaskDefinition<S, R> {
  if (!/^[a-z][a-z0-9_.-]{0,63}$/.test(def.type)) {
    throw new TypeError(`Task type "${def.type}" must match /^[a-z][a-z0-9_.-]{0,63}$/`);
  }
  if (def.isolation && def.isolation !== 'inline' && !def.module) {
    throw new TypeError(`Task type "${def.type}" runs isolated (${def.isolation}): add \`module: import.meta.url\`.`);
  }
  for (const name of def.env ?? []) {
    if (!ENV_NAME.test(name))
      throw new TypeError(`Task type "${def.type}": env entry "${name}" is not a variable name.`);
  }
  return def;
}

/** The model names `input` will use (see TaskDefinition.models). */
export function modelsOfInput(def: AnyTaskDefinition, input: unknown): (string | undefined)[] {
  if (def.models) return def.models(input);
  const model = input !== null && typeof input === 'object' ? (input as { model?: unknown }).model : undefined;
  return typeof model === 'string' ? [model] : [];
}
