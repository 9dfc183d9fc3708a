// One consumer's view of one task's events on a LeashSocket: deduplicated by seq
// (a re-subscribe after a reconnect replays), ended by the terminal event or a failure.

import type { TaskStreamEvent } from './types.ts';
import { TERMINAL_EVENTS } from './types.ts';

/** One consumer's view of one task's events. */
export class Channel {
  readonly taskId: string;
  last: number;
  done = false;
  #queue: TaskStreamEvent[] = [];
  #error: unknown = null;
  #wake: (() => void) | null = null;

  constructor(taskId: string, after: number) {
    this.taskId = taskId;
    this.last = after;
  }

  push(e: TaskStreamEvent): void {
    if (this.done || e.seq <= this.last) return; // replay after a re-subscribe
    this.last = e.seq;
    this.#queue.push(e);
    if (TERMINAL_EVENTS.has(e.type)) this.done = true;
    this.#notify();
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.done = true;
    this.#error = err;
    this.#notify();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async *iterate(signal?: AbortSignal): AsyncGenerator<TaskStreamEvent> {
    const onAbort = (): void => this.#notify();
    signal?.addEventListener('abort', onAbort);
    try {
      for (;;) {
        signal?.throwIfAborted();
        const e = this.#queue.shift();
        if (e !== undefined) {
          yield e;
          continue;
        }
        if (this.done) {
          if (this.#error !== null) throw this.#error;
          return;
        }
        await new Promise<void>((r) => (this.#wake = r));
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.done = true;
    }
  }
}
