// The state of one followed task as `leash run` / `leash tasks watch` show it in a
// terminal: status, progress, output cut into rows. A tiny external store (for
// React's useSyncExternalStore) so the event loop stays plain async code.

import type { Task, TaskStatus, TaskStreamEvent } from '../client/index.ts';
import { RowSplitter } from './rows.ts';

export interface TaskViewState {
  id: string;
  type: string;
  status: TaskStatus;
  progress: number | null;
  message: string | null;
  /** Finished output rows; only ever appended to (rendered once, with <Static>). */
  rows: readonly string[];
  /** The output row still being written. */
  tail: string;
  /** A hint under the bar (e.g. how Ctrl+C behaves, or that a cancel is on its way). */
  notice: string | null;
  /** The task as it ended; null while it runs. */
  ended: Task | null;
}

export class TaskViewModel {
  #state: TaskViewState;
  readonly #splitter: RowSplitter;
  readonly #listeners = new Set<() => void>();

  constructor(task: Task, width: number, notice: string | null = null) {
    this.#splitter = new RowSplitter(width);
    this.#state = {
      id: task.id,
      type: task.type,
      status: task.status,
      progress: task.progress,
      message: task.progress_message,
      rows: [],
      tail: '',
      notice,
      ended: null,
    };
  }

  subscribe = (fn: () => void): (() => void) => {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  };

  getSnapshot = (): TaskViewState => this.#state;

  #set(patch: Partial<TaskViewState>): void {
    this.#state = { ...this.#state, ...patch };
    for (const fn of this.#listeners) fn();
  }

  apply(ev: TaskStreamEvent): void {
    switch (ev.type) {
      case 'task.started':
        this.#set({ status: 'running' });
        break;
      case 'task.progress':
        this.#set({ progress: ev.data.progress, message: ev.data.message });
        break;
      case 'output.delta': {
        const done = this.#splitter.push(ev.data.text);
        this.#set({
          ...(done.length > 0 && { rows: [...this.#state.rows, ...done] }),
          tail: this.#splitter.tail,
          ...(this.#state.status === 'queued' && { status: 'running' as const }),
        });
        break;
      }
      case 'task.cancelling':
        this.#set({ status: 'cancelling' });
        break;
      default:
        break;
    }
  }

  notice(text: string | null): void {
    this.#set({ notice: text });
  }

  finish(task: Task): void {
    const done = this.#splitter.flush();
    this.#set({
      rows: done.length > 0 ? [...this.#state.rows, ...done] : this.#state.rows,
      tail: '',
      status: task.status,
      progress: task.progress,
      message: task.progress_message,
      notice: null,
      ended: task,
    });
  }
}
