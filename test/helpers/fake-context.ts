// A hand-made TaskContext for running task handlers without the runtime: it records
// every emit / progress / checkpoint and exposes the AbortController behind `signal`.

import pino from 'pino';
import { CancelledError } from '../../src/core/cancel.ts';
import type { TaskContext } from '../../src/runtime/define-task.ts';
import type { ModelRegistry } from '../../src/models/model.ts';
import type { Store } from '../../src/store/store.ts';
import type { CancelReason } from '../../src/core/types.ts';
import { createModelRegistry } from '../../src/models/registry.ts';

export interface FakeContextOptions {
  models?: ModelRegistry;
  /** Default model of the registry built when `models` is not given. */
  defaultModel?: string;
  resumeState?: unknown;
  /** Called for each checkpoint, before it resolves (e.g. to cancel after chunk N). */
  onCheckpoint?: (state: unknown, n: number) => void | Promise<void>;
  /** Called for each emitted delta. */
  onEmit?: (text: string, n: number) => void;
}

export interface FakeContext {
  ctx: TaskContext;
  emitted: string[];
  progress: { percent: number | null; message: string | undefined }[];
  checkpoints: unknown[];
  /** Aborts `ctx.signal` with a CancelledError, as the runtime does. */
  cancel(reason?: CancelReason): void;
  readonly controller: AbortController;
  /** Everything emitted so far, joined. */
  output(): string;
}

export function createFakeContext(options: FakeContextOptions = {}): FakeContext {
  const controller = new AbortController();
  const emitted: string[] = [];
  const progress: FakeContext['progress'] = [];
  const checkpoints: unknown[] = [];
  // Like the runtime: emit and progress are dropped once the task is cancelling.
  const ctx: TaskContext = {
    taskId: 'task_fake',
    owner: 'local',
    threadId: null,
    signal: controller.signal,
    deadline: null,
    resumeState: options.resumeState ?? null,
    progress(percent, message) {
      if (!controller.signal.aborted) progress.push({ percent, message });
    },
    emit(text) {
      if (controller.signal.aborted) return false;
      emitted.push(text);
      options.onEmit?.(text, emitted.length);
      return true;
    },
    async checkpoint(state) {
      // Stored as JSON, as a real store would.
      checkpoints.push(JSON.parse(JSON.stringify(state)));
      await options.onCheckpoint?.(state, checkpoints.length);
    },
    models: options.models ?? createModelRegistry({ defaultModel: options.defaultModel ?? 'simulated?tps=0' }),
    store: unusedStore(),
    log: pino({ level: 'silent' }),
  };
  return {
    ctx,
    emitted,
    progress,
    checkpoints,
    controller,
    cancel: (reason = 'user') => controller.abort(new CancelledError(reason)),
    output: () => emitted.join(''),
  };
}

/** The built-in tasks never touch the store; fail loudly if one starts to. */
function unusedStore(): Store {
  return new Proxy({} as Store, {
    get(_t, prop) {
      if (prop === 'then') return undefined;
      throw new Error(`fake context: store.${String(prop)} is not available`);
    },
  });
}
