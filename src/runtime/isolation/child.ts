// The handler side of isolation, shared by the worker and the process entry: it
// imports the task's module, runs the handler with a context whose calls become
// messages, and aborts the handler's signal when the runtime says so. If the
// handler ignores that signal, the runtime kills this thread or process.

import { taskExportsOf } from '../task-exports.ts';
import { createModelRegistry } from '../../models/registry.ts';
import { pino } from 'pino';
import { CancelledError, asCancelReason } from '../../core/cancel.ts';
import type { AnyTaskDefinition, TaskContext } from '../define-task.ts';
import { LeashError, toTaskError } from '../../core/errors.ts';
import { ISOLATED_STORE_CALLS, type FromChild, type RunRequest, type ToChild } from './protocol.ts';

export interface ParentPort {
  post(msg: FromChild): void;
  onMessage(fn: (msg: ToChild) => void): void;
}

async function findDefinition(moduleUrl: string, type: string): Promise<AnyTaskDefinition> {
  const mod = (await import(moduleUrl)) as Record<string, unknown>;
  for (const v of taskExportsOf(mod)) {
    if (
      v &&
      typeof v === 'object' &&
      (v as AnyTaskDefinition).type === type &&
      typeof (v as AnyTaskDefinition).run === 'function'
    ) {
      return v as AnyTaskDefinition;
    }
  }
  throw new LeashError('unknown_task_type', `Module ${moduleUrl} exports no task definition of type "${type}".`);
}

type Pending = { resolve: (v: unknown) => void; reject: (e: unknown) => void };

/** `ctx.store` of an isolated handler: the calls of ISOLATED_STORE_CALLS, run by the parent. */
function parentStore(port: ParentPort, pending: Map<number, Pending>): TaskContext['store'] {
  let next = 0;
  return new Proxy({} as TaskContext['store'], {
    get(_target, prop) {
      if (prop === 'then') return undefined; // not a thenable
      if (typeof prop !== 'string' || !ISOLATED_STORE_CALLS.has(prop)) {
        throw new LeashError(
          'not_supported',
          `ctx.store.${String(prop)} is not available to isolated handlers; run the task inline.`,
        );
      }
      return (...args: unknown[]) =>
        new Promise((resolve, reject) => {
          const id = ++next;
          pending.set(id, { resolve, reject });
          port.post({ t: 'store', id, method: prop, args });
        });
    },
  });
}

export function serveParent(port: ParentPort): void {
  let controller: AbortController | null = null;
  const pending = new Map<number, Pending>();
  const store = parentStore(port, pending);
  port.onMessage((msg) => {
    if (msg.t === 'store-result') {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (!p) return;
      if (msg.ok) p.resolve(msg.value);
      else p.reject(LeashError.fromJSON(msg.error));
    } else if (msg.t === 'abort') controller?.abort(new CancelledError(asCancelReason(msg.reason) ?? 'user'));
    else if (msg.t === 'run') {
      controller = new AbortController();
      void runOne(port, msg, controller.signal, store).finally(() => (controller = null));
    }
  });
  port.post({ t: 'ready' });
}

async function runOne(
  port: ParentPort,
  req: RunRequest,
  signal: AbortSignal,
  store: TaskContext['store'],
): Promise<void> {
  try {
    const def = await findDefinition(req.moduleUrl, req.type);
    let models: TaskContext['models'] | null = null;
    const ctx: TaskContext = {
      taskId: req.taskId,
      owner: req.owner,
      threadId: req.threadId,
      signal,
      deadline: req.deadline ? new Date(req.deadline) : null,
      resumeState: req.resumeState,
      progress: (percent, message) => port.post({ t: 'progress', percent, ...(message !== undefined && { message }) }),
      emit: (text) => {
        if (signal.aborted) return false;
        port.post({ t: 'emit', text });
        return true;
      },
      checkpoint: async (state) => port.post({ t: 'checkpoint', state }),
      // Built on first use: a handler that calls no model pays nothing for it.
      get models() {
        return (models ??= createModelRegistry({ defaultModel: req.defaultModel, allow: req.allowedModels }));
      },
      store,
      log: pino({ level: process.env.LEASH_LOG_LEVEL ?? 'warn' }, pino.destination(2)).child({ task_id: req.taskId }),
    };
    const result = await def.run(def.input.parse(req.input), ctx);
    port.post({ t: 'done', result: result === undefined ? null : result });
  } catch (e) {
    port.post({ t: 'error', error: { ...toTaskError(e), ...(e instanceof Error && { name: e.name }) } });
  }
}
