// Small helpers of the HTTP client: a backoff sleep, an error's text, an SSE frame as an event.

import type { TaskStreamEvent } from './types.ts';

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Rebuilds the event from an SSE frame: `event:` is the type, `data` the payload plus task_id and seq. */
export function toStreamEvent(event: string, json: string, fallbackTaskId: string): TaskStreamEvent {
  const raw = JSON.parse(json) as Record<string, unknown>;
  const { task_id, seq, created_at, ...data } = raw;
  return {
    type: event,
    data,
    task_id: typeof task_id === 'string' ? task_id : fallbackTaskId,
    seq: Number(seq),
    ...(typeof created_at === 'string' && { created_at }),
  } as TaskStreamEvent;
}

export function describe(err: unknown): string {
  if (err === null || err === undefined) return 'unknown error';
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}
