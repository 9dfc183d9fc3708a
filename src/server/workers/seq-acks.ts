// The seq an event frame of a worker got in the task's event log, for its ack.
//
// The runtime appends a progress event at once, but coalesces output: the text of
// several `output` frames may become one `output.delta`, appended at the end of the
// event-loop turn (or when a progress, checkpoint or the task's end flushes it). So
// the hub does not ask the runtime for a seq: it listens to the task on the node's
// event bus, where events arrive in seq order exactly as SSE readers get them, and
// matches them to the frames it handed over, in order. An `output` frame's seq is
// the seq of the `output.delta` that holds its text (several frames may share one).

import type { EventLog } from '../../runtime/event-log.ts';
import { TERMINAL_EVENT_TYPES, type TaskEvent } from '../../core/types.ts';

interface Waiter {
  kind: 'progress' | 'output';
  /** Output: the length of its text (a delta holds whole frames' texts, in order). */
  chars: number;
  resolve(seq: number | null): void;
}

/** After the job settled without a terminal event here (its run was detached), waiters give up after this. */
const GIVE_UP_MS = 5_000;

export class SeqAcks {
  readonly #queue: Waiter[] = [];
  #unlisten: (() => void) | null;
  #closed = false;

  constructor(events: EventLog, taskId: string) {
    this.#unlisten = events.listen(taskId, (e) => {
      if (typeof e === 'object' && e !== null) this.#onEvent(e);
    });
  }

  /**
   * Registers a frame about to be handed to the runtime (call it before the ctx call:
   * a progress event is delivered during it). Resolves with the event's seq, or null
   * when no event came of it. `dropped()`: the runtime did not take it.
   */
  expect(kind: Waiter['kind'], chars = 0): { seq: Promise<number | null>; dropped(): void } {
    let waiter!: Waiter;
    const seq = new Promise<number | null>((resolve) => {
      waiter = { kind, chars, resolve };
    });
    if (this.#closed) waiter.resolve(null);
    else this.#queue.push(waiter);
    return {
      seq,
      dropped: () => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        waiter.resolve(null);
      },
    };
  }

  /** The job settled: its last output is flushed with the terminal event; stop listening after that. */
  settled(): void {
    setTimeout(() => this.#close(), GIVE_UP_MS).unref();
  }

  #onEvent(e: TaskEvent): void {
    if (e.type === 'task.progress') {
      if (this.#queue[0]?.kind === 'progress') this.#queue.shift()!.resolve(e.seq);
    } else if (e.type === 'output.delta') {
      let left = e.data.text.length;
      while (left > 0 && this.#queue[0]?.kind === 'output') {
        const w = this.#queue.shift()!;
        left -= w.chars;
        w.resolve(e.seq);
      }
    } else if (TERMINAL_EVENT_TYPES.has(e.type)) {
      this.#close();
    }
  }

  #close(): void {
    this.#closed = true;
    this.#unlisten?.();
    this.#unlisten = null;
    for (const w of this.#queue.splice(0)) w.resolve(null);
  }
}
