// Follows the event streams of the chat tasks whose answers are streaming. Each
// stream starts at seq 0 and the text is rebuilt from the deltas alone, so a
// reload (or a reconnect) shows the answer once, never the stored text plus a
// replay of it. The client resumes dropped connections by itself.

import { useCallback, useEffect, useRef, useState } from 'react';
import type { CancelReason, LeashClient, TaskStreamEvent } from '../../../src/client/index.ts';

export type LiveStatus = 'queued' | 'running' | 'completed' | 'cancelled' | 'failed';

export interface LiveAnswer {
  taskId: string;
  text: string;
  /** Last seq applied; 0 until the first event arrived. */
  seq: number;
  status: LiveStatus;
  /** Stop asked for (by this UI or anyone) and not yet confirmed. */
  stopping: boolean;
  reason: CancelReason | null;
  error: string | null;
}

const TERMINAL: ReadonlySet<LiveStatus> = new Set(['completed', 'cancelled', 'failed']);
export const isOver = (l: LiveAnswer | undefined): boolean => l !== undefined && TERMINAL.has(l.status);

function apply(l: LiveAnswer, e: TaskStreamEvent): LiveAnswer {
  const next = { ...l, seq: e.seq };
  switch (e.type) {
    case 'task.queued':
      return { ...next, status: 'queued' };
    case 'task.started':
      return { ...next, status: 'running' };
    case 'output.delta':
      return { ...next, text: next.text + e.data.text };
    case 'task.cancelling':
      return { ...next, stopping: true, reason: e.data.reason };
    case 'task.completed':
      return { ...next, status: 'completed', stopping: false };
    case 'task.cancelled':
      // The server's record of what was said before the stop is authoritative.
      return { ...next, status: 'cancelled', stopping: false, reason: e.data.reason, text: e.data.output_text };
    case 'task.failed':
      return { ...next, status: 'failed', stopping: false, error: e.data.error.message };
    default:
      return next;
  }
}

export function useTaskStreams(client: LeashClient, onEnded: (taskId: string) => void) {
  const [live, setLive] = useState<Record<string, LiveAnswer>>({});
  const controllers = useRef(new Map<string, AbortController>());
  const onEndedRef = useRef(onEnded);
  onEndedRef.current = onEnded;

  const follow = useCallback(
    (taskId: string) => {
      if (controllers.current.has(taskId)) return;
      const ac = new AbortController();
      controllers.current.set(taskId, ac);
      setLive((m) => ({
        ...m,
        [taskId]: { taskId, text: '', seq: 0, status: 'queued', stopping: false, reason: null, error: null },
      }));
      void (async () => {
        try {
          for await (const e of client.tasks.events(taskId, { after: 0, signal: ac.signal })) {
            setLive((m) => {
              const cur = m[taskId];
              // A seq at or below the last one applied is a replay: never append it twice.
              if (cur === undefined || e.seq <= cur.seq) return m;
              return { ...m, [taskId]: apply(cur, e) };
            });
          }
        } catch (err) {
          if (ac.signal.aborted) return;
          const message = err instanceof Error ? err.message : String(err);
          setLive((m) => {
            const cur = m[taskId];
            return cur ? { ...m, [taskId]: { ...cur, error: `Lost the stream: ${message}` } } : m;
          });
        } finally {
          if (controllers.current.get(taskId) === ac) controllers.current.delete(taskId);
        }
        if (!ac.signal.aborted) onEndedRef.current(taskId);
      })();
    },
    [client],
  );

  const markStopping = useCallback((taskId: string) => {
    setLive((m) => {
      const cur = m[taskId];
      return cur && !isOver(cur) ? { ...m, [taskId]: { ...cur, stopping: true } } : m;
    });
  }, []);

  /** Stops following everything (leaving a thread); the tasks themselves go on. */
  const reset = useCallback(() => {
    for (const ac of controllers.current.values()) ac.abort();
    controllers.current.clear();
    setLive({});
  }, []);

  useEffect(() => reset, [reset]);

  return { live, follow, markStopping, reset };
}
