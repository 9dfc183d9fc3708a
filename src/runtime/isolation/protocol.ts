// Messages between the runtime and an isolated handler (worker thread or child
// process). Plain JSON-able objects keyed on `t`.

import type { TaskError } from '../types.ts';

export type Isolation = 'inline' | 'worker' | 'process';
export const ISOLATIONS: readonly Isolation[] = ['inline', 'worker', 'process'];

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

export type ToChild = RunRequest | { t: 'abort'; reason: string };

export type FromChild =
  | { t: 'ready' }
  | { t: 'progress'; percent: number | null; message?: string }
  | { t: 'emit'; text: string }
  | { t: 'checkpoint'; state: unknown }
  | { t: 'done'; result: unknown }
  | { t: 'error'; error: TaskError & { name?: string } };
