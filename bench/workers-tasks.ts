// The in-process twin of bench/workers-worker.py's `bench.wait`, for bench/workers.ts:
// waits until cancelled and writes the monotonic time (ms) at which its signal fired.
import { writeFileSync, renameSync } from 'node:fs';
import { z } from 'zod';
import { defineTask } from '../src/runtime/define-task.ts';

const write = (path: string, text: string): void => {
  writeFileSync(path + '.tmp', text);
  renameSync(path + '.tmp', path);
};

export const inprocWait = defineTask({
  type: 'inproc.wait',
  input: z.object({ started: z.string(), marker: z.string() }),
  async run(input, ctx) {
    write(input.started, '1');
    await new Promise<void>((resolve) => {
      ctx.signal.addEventListener(
        'abort',
        () => {
          write(input.marker, String(Number(process.hrtime.bigint()) / 1e6));
          resolve();
        },
        { once: true },
      );
    });
    ctx.signal.throwIfAborted();
  },
});

export const inprocNoop = defineTask({
  type: 'inproc.noop',
  input: z.object({}),
  async run() {
    return 1;
  },
});
