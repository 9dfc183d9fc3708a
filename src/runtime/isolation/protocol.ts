// Messages between the runtime and an isolated handler (worker thread or child
// process). Plain JSON-able objects keyed on `t`.

import type { CancelReason, TaskError } from '../../core/types.ts';

export interface RunRequest {
  t: 'run';
  /** The module that exports the task definition (its `module` field). */
  moduleUrl: string;
  type: string;
  input: unknown;
  taskId: string;
  owner: string;
  threadId: string | null;
  deadline: string | null;
  resumeState: unknown;
  defaultModel: string;
  /** The parent's model allowlist: an isolated handler may name no more than an inline one. */
  allowedModels: readonly string[];
}

/**
 * Store methods an isolated handler may call through its parent (`ctx.store`): reads and
 * the conversation writes a chat turn makes. The rest (claims, leases, event writes)
 * belong to the runtime alone.
 */
export const ISOLATED_STORE_CALLS: ReadonlySet<string> = new Set([
  'getTask',
  'listEvents',
  'getThread',
  'listMessages',
  'listRecentMessages',
  'countMessagesBefore',
  'appendMessage',
  'updateMessage',
  'deleteMessagesOfTask',
  'findCachedResult',
]);

export type ToChild =
  | RunRequest
  | { t: 'abort'; reason: CancelReason }
  | { t: 'store-result'; id: number; ok: true; value: unknown }
  | { t: 'store-result'; id: number; ok: false; error: TaskError & { name?: string } };

export type FromChild =
  | { t: 'ready' }
  | { t: 'progress'; percent: number | null; message?: string }
  | { t: 'emit'; text: string }
  | { t: 'checkpoint'; state: unknown }
  | { t: 'store'; id: number; method: string; args: unknown[] }
  | { t: 'done'; result: unknown }
  | { t: 'error'; error: TaskError & { name?: string } };
