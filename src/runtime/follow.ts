// Reading a task's event stream: replay what exists after `after`, then follow it
// live until the terminal event. Every subscriber (SSE, WebSocket, OpenAI streams,
// wait) goes through here, so "no duplicates, no gaps, resumable by seq" is one
// piece of code. Live events come from this node's bus; events written elsewhere
// (the store, another node) arrive as pokes on the same bus (the runtime listens to
// the store's notifications once for all readers), and a slow poll is the backstop.

import type { Store } from '../store/store.ts';
import type { EventLog } from './event-log.ts';
import type { TaskEvent } from '../core/types.ts';
import { isTerminal, isTerminalEvent } from '../core/types.ts';

export interface FollowOptions {
  after?: number;
  signal?: AbortSignal;
  /** Backstop re-read of the store when nothing was heard (ms). */
  pollMs?: number;
}

export async function* followEvents(
  store: Store,
  log: EventLog,
  taskId: string,
  opts: FollowOptions = {},
): AsyncGenerator<TaskEvent, void, undefined> {
  const { signal, pollMs = 1000 } = opts;
  let last = Math.max(0, Math.floor(opts.after ?? 0));
  const live: Array<TaskEvent | null> = [];
  // The wait in progress, if any: told true when the backstop poll is due, false when woken.
  let waiting: ((timedOut: boolean) => void) | null = null;
  const settle = (timedOut: boolean): void => {
    const w = waiting;
    waiting = null;
    w?.(timedOut);
  };
  const notify = (): void => settle(false);
  // One backstop timer per reader, re-armed for each wait (refresh) rather than a new
  // timer per wait: a relayed stream waits once per delta, thousands of times a second
  // across streams. A fire while nobody waits is dropped; the next wait re-arms it.
  let poll: NodeJS.Timeout | null = null;
  const unlisten = log.listen(taskId, (e) => {
    // "Stored up to seq n": nothing to do when this reader is already past it.
    if (typeof e === 'number') {
      if (e <= last) return;
      e = null;
    }
    // A slow reader must not grow memory: past a bound, drop the copies and re-read the store.
    if (live.length >= 1024) live.splice(0, live.length, null);
    else live.push(e);
    notify();
  });
  signal?.addEventListener('abort', notify);

  // Union of what is still in memory and what is committed. Memory is read first:
  // an event leaves memory only after its commit, so it is in one or the other.
  const readMissing = async (): Promise<TaskEvent[]> => {
    const mem = log.uncommitted(taskId, last);
    const stored = await store.listEvents(taskId, last);
    const bySeq = new Map<number, TaskEvent>();
    for (const e of stored) bySeq.set(e.seq, e);
    for (const e of mem) if (!bySeq.has(e.seq)) bySeq.set(e.seq, e);
    return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  };

  try {
    // What `readMissing` returns is the log as it stands: seqs may skip (recovery after
    // a crash writes above every seq the lost node may have handed out), so its events
    // are taken as they come, `seq > last`; only live events must follow on exactly.
    let backlog = await readMissing();
    for (;;) {
      for (const e of backlog) {
        if (e.seq <= last) continue;
        last = e.seq;
        yield e;
        if (isTerminalEvent(e)) return;
      }
      backlog = [];
      if (signal?.aborted) return;

      if (live.length === 0) {
        const timedOut = await new Promise<boolean>((resolve) => {
          waiting = resolve;
          if (poll) poll.refresh();
          else poll = setTimeout(() => settle(true), pollMs);
        });
        if (signal?.aborted) return;
        if (timedOut) {
          backlog = await readMissing();
          if (backlog.length === 0) {
            // Nothing new; a task that ended without us seeing its terminal event
            // (purged, or deleted) must not keep the stream open forever.
            const t = await store.getTask(taskId);
            if (!t || (isTerminal(t.status) && (await readMissing()).length === 0)) return;
          }
          continue;
        }
      }

      // `last` only moves in the delivery loop above, so a re-read covers the whole batch.
      let expect = last;
      let needRead = false;
      for (const e of live.splice(0)) {
        if (e === null || e.seq > expect + 1) {
          needRead = true;
          break;
        }
        if (e.seq === expect + 1) {
          backlog.push(e);
          expect = e.seq;
        }
      }
      if (needRead) backlog = await readMissing();
    }
  } finally {
    if (poll) clearTimeout(poll);
    unlisten();
    signal?.removeEventListener('abort', notify);
  }
}
