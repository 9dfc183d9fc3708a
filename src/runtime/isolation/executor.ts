// Runs a handler in a worker thread or a child process and guarantees it stops:
// on abort the handler's own signal fires first (cooperative); if it has not
// returned within its grace, the slot is killed, and only once it is really gone
// does the call settle, so the task is never `cancelled` while its work still runs.

import type { AnyTaskDefinition, TaskContext } from '../define-task.ts';
import { cancelReasonOf } from '../../core/cancel.ts';
import { LeashError, toTaskError } from '../../core/errors.ts';
import { ISOLATED_STORE_CALLS } from './protocol.ts';
import { IsolationPool, type Slot, type SlotExit, type SlotKind } from './pool.ts';

export interface IsolatedRunOptions {
  graceMs: number;
  memoryLimitMb: number;
  defaultModel: string;
  /** The model allowlist (LEASH_MODELS), carried over: the child's filtered environment has none. */
  allowedModels: readonly string[];
  /** Told when the grace ran out and the slot was killed. */
  onForced?: () => void;
}

export interface ExecutorOptions {
  /** Slots kept warm per pool (default 2). */
  maxIdle?: number;
}

export const DEFAULT_GRACE_MS = 2000;
export const DEFAULT_MEMORY_LIMIT_MB = 512;

export class IsolatedExecutor {
  readonly #pools = new Map<string, IsolationPool>();
  readonly #maxIdle: number;

  constructor(opts: ExecutorOptions = {}) {
    this.#maxIdle = opts.maxIdle ?? 2;
  }

  /** One pool per kind, heap limit and environment allowlist: a warm slot never carries another type's secrets. */
  pool(kind: SlotKind, memoryLimitMb = DEFAULT_MEMORY_LIMIT_MB, env: readonly string[] = []): IsolationPool {
    const names = [...new Set(env)].sort();
    const key = `${kind}:${memoryLimitMb}:${names.join(',')}`;
    let p = this.#pools.get(key);
    if (!p) {
      p = new IsolationPool({ kind, memoryLimitMb, maxIdle: this.#maxIdle, env: names });
      this.#pools.set(key, p);
    }
    return p;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
  }

  async run(
    kind: SlotKind,
    def: AnyTaskDefinition,
    input: unknown,
    ctx: TaskContext,
    opts: IsolatedRunOptions,
  ): Promise<unknown> {
    if (!def.module) {
      throw new LeashError(
        'invalid_task_definition',
        `Task type "${def.type}" needs \`module: import.meta.url\` to run isolated.`,
      );
    }
    ctx.signal.throwIfAborted();
    const pool = this.pool(kind, opts.memoryLimitMb, def.env);
    const slot = await pool.acquire();
    if (ctx.signal.aborted) {
      pool.release(slot);
      throw ctx.signal.reason;
    }
    return new Promise<unknown>((resolve, reject) => {
      let settled = false;
      let forced = false;
      let killTimer: NodeJS.Timeout | null = null;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        if (killTimer) clearTimeout(killTimer);
        ctx.signal.removeEventListener('abort', onAbort);
        slot.onExit = null;
        fn();
      };
      slot.onMessage = (m) => {
        switch (m.t) {
          case 'progress':
            ctx.progress(m.percent, m.message);
            break;
          case 'emit':
            ctx.emit(m.text);
            break;
          case 'checkpoint':
            void ctx.checkpoint(m.state).catch(() => {});
            break;
          case 'store': {
            // ctx.store of the isolated handler (a chat turn reads and writes its thread).
            const store = ctx.store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
            const call = async (): Promise<unknown> => {
              if (!ISOLATED_STORE_CALLS.has(m.method)) {
                throw new LeashError('not_supported', `ctx.store.${m.method} is not available to isolated handlers.`);
              }
              return store[m.method]!.apply(ctx.store, m.args);
            };
            call().then(
              (value) => slot.send({ t: 'store-result', id: m.id, ok: true, value }),
              (e: unknown) => slot.send({ t: 'store-result', id: m.id, ok: false, error: toTaskError(e) }),
            );
            break;
          }
          case 'done':
            settle(() => {
              pool.release(slot);
              resolve(m.result);
            });
            break;
          case 'error':
            settle(() => {
              pool.release(slot);
              const err = LeashError.fromJSON(m.error);
              if (m.error.name === 'AbortError') err.name = 'AbortError';
              reject(err);
            });
            break;
        }
      };
      slot.onExit = (exit) =>
        settle(() => {
          if (forced || ctx.signal.aborted) reject(ctx.signal.reason);
          else reject(crashError(slot, exit));
        });
      const onAbort = (): void => {
        slot.send({ t: 'abort', reason: cancelReasonOf(ctx.signal) });
        killTimer = setTimeout(() => {
          forced = true;
          opts.onForced?.();
          void slot.kill();
        }, opts.graceMs);
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      slot.send({
        t: 'run',
        moduleUrl: def.module!,
        type: def.type,
        input,
        taskId: ctx.taskId,
        owner: ctx.owner,
        threadId: ctx.threadId,
        deadline: ctx.deadline ? ctx.deadline.toISOString() : null,
        resumeState: ctx.resumeState,
        defaultModel: opts.defaultModel,
        allowedModels: opts.allowedModels,
      });
    });
  }
}

function crashError(slot: Slot, exit: SlotExit): LeashError {
  const err = exit.error as { code?: string; message?: string } | null;
  const oom =
    err?.code === 'ERR_WORKER_OUT_OF_MEMORY' ||
    /heap out of memory|Reached heap limit|Allocation failed/i.test(exit.stderrTail);
  if (oom) {
    return new LeashError('out_of_memory', `The task's ${slot.kind} ran out of memory and was stopped.`);
  }
  const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
  const why = err?.message ? `: ${err.message}` : '';
  return new LeashError('handler_crashed', `The task's ${slot.kind} stopped unexpectedly (${how})${why}.`);
}
