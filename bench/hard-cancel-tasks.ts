// Task types for bench/hard-cancel.ts: a CPU spinner that never looks at its signal,
// and a no-op, in each isolation mode.
import { z } from 'zod';
import { defineTask } from '../src/runtime/define-task.ts';

const module = import.meta.url;
const empty = z.object({}).strict();

const spin = (isolation: 'worker' | 'process') =>
  defineTask({
    type: `spin.${isolation}`,
    input: empty,
    isolation,
    module,
    graceMs: 200,
    async run(_i, ctx) {
      ctx.emit('spinning');
      // A busy loop the optimizer can't drop, that never yields to look at ctx.signal.
      const counter = new Int32Array(1);
      for (;;) Atomics.add(counter, 0, 1);
    },
  });
const noop = (isolation: 'inline' | 'worker' | 'process') =>
  defineTask({
    type: `noop.${isolation}`,
    input: empty,
    isolation,
    module,
    async run() {
      return 1;
    },
  });

export const spinWorker = spin('worker');
export const spinProcess = spin('process');
export const noopInline = noop('inline');
export const noopWorker = noop('worker');
export const noopProcess = noop('process');
export const benchTasks = [spinWorker, spinProcess, noopInline, noopWorker, noopProcess];
