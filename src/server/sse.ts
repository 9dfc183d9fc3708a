// Writes a task's event stream as Server-Sent Events on a raw response:
//   id: <seq>\nevent: <type>\ndata: <json>\n\n
// `data` is the event's data plus task_id and seq, so a client that only reads
// `data` still knows where it is. The writer stops reading (aborts the iterator's
// signal) as soon as the client goes away, waits for 'drain' when the socket
// buffer is full, and sends a comment line while nothing happens so proxies keep
// the connection open.

import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { TaskEvent } from '../runtime/types.ts';
import { isTerminalEvent } from '../runtime/types.ts';

export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
};

export const DEFAULT_KEEPALIVE_MS = 15_000;

/** One SSE frame. JSON never contains a raw newline, so `data` is one line. */
export function formatSseEvent(e: TaskEvent): string {
  const data = { ...(e.data as Record<string, unknown>), task_id: e.task_id, seq: e.seq };
  return `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Where to resume: `Last-Event-ID` (sent by EventSource on reconnect) wins over
 * `?after=`. Returns null for a value that is not a non-negative integer.
 */
export function resumeAfter(lastEventId: string | string[] | undefined, afterQuery: number | undefined): number | null {
  const h = Array.isArray(lastEventId) ? lastEventId[lastEventId.length - 1] : lastEventId;
  if (h !== undefined && h.trim() !== '') {
    const t = h.trim();
    return /^\d{1,15}$/.test(t) ? Number(t) : null;
  }
  return afterQuery ?? 0;
}

export type SseEnd = 'terminal' | 'client_gone' | 'aborted' | 'source_ended';

export interface SseOptions {
  keepaliveMs?: number;
  /** Aborted by the server (shutdown): end the stream without a terminal event. */
  signal?: AbortSignal;
  /** Extra headers (e.g. the task id of a streamed create). */
  headers?: Record<string, string>;
  /** Told about a source that failed (the stream then just ends). */
  onError?: (err: unknown) => void;
}

/**
 * Streams `source(signal)` to `res` until the terminal event, the client leaving,
 * or `opts.signal`. The signal given to `source` aborts in the last two cases so
 * the reader stops at once. Never throws: a failing source ends the stream.
 */
export async function streamSse(
  res: ServerResponse,
  source: (signal: AbortSignal) => AsyncIterable<TaskEvent>,
  opts: SseOptions = {},
): Promise<SseEnd> {
  const ac = new AbortController();
  let end: SseEnd | null = null;
  const stop = (why: SseEnd): void => {
    end ??= why;
    ac.abort();
  };
  const onClose = (): void => {
    if (!res.writableFinished) stop('client_gone');
  };
  res.on('close', onClose);
  const onServerAbort = (): void => stop('aborted');
  if (opts.signal?.aborted) stop('aborted');
  else opts.signal?.addEventListener('abort', onServerAbort, { once: true });

  const keepaliveMs = opts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
  let timer: NodeJS.Timeout | null = null;

  // Resolves false when the stream is gone (no point writing further).
  const write = async (chunk: string): Promise<boolean> => {
    if (ac.signal.aborted || res.destroyed || res.writableEnded) return false;
    if (res.write(chunk)) return true;
    try {
      await once(res, 'drain', { signal: ac.signal });
      return true;
    } catch {
      return false;
    }
  };

  try {
    res.writeHead(200, { ...SSE_HEADERS, ...opts.headers });
    res.flushHeaders();
    timer = setInterval(() => {
      // Skip a beat rather than queue comments behind a full buffer.
      if (!res.writableNeedDrain && !res.writableEnded) res.write(': keepalive\n\n');
    }, keepaliveMs);
    timer.unref();

    if (!ac.signal.aborted) {
      for await (const e of source(ac.signal)) {
        if (!(await write(formatSseEvent(e)))) break;
        if (isTerminalEvent(e)) {
          end ??= 'terminal';
          break;
        }
      }
    }
  } catch (err) {
    if (!ac.signal.aborted) opts.onError?.(err);
    // A failed read (store error) or a write on a dead socket: end the stream; the
    // client reconnects with Last-Event-ID and resumes without loss.
  } finally {
    if (timer !== null) clearInterval(timer);
    opts.signal?.removeEventListener('abort', onServerAbort);
    res.off('close', onClose);
    end ??= ac.signal.aborted ? 'aborted' : 'source_ended';
    ac.abort();
    if (!res.writableEnded) res.end();
  }
  return end;
}
