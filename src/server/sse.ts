// Server-Sent Events on a raw response, for every stream leash writes: task event
// streams (`id: <seq>\nevent: <type>\ndata: <json>`, where `data` is the event's
// data plus task_id and seq, so a client that only reads `data` still knows where
// it is) and the OpenAI streams (`data: {...}` chunks, `event:` + `data:` Responses
// events). One writer: it stops reading (aborts the source's signal) as soon as the
// client goes away, waits for 'drain' when the socket buffer is full, and sends a
// comment line while nothing happens so proxies keep the connection open.

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

/** `data: <json>\n\n` (chat completion chunks). */
export const dataFrame = (data: unknown): string => `data: ${JSON.stringify(data)}\n\n`;

/** `event: <type>\ndata: <json>\n\n` (Responses stream events). */
export const eventFrame = (event: { type: string }): string =>
  `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;

export type FrameStreamEnd = 'done' | 'client_gone' | 'aborted' | 'failed';

export interface FrameStreamOptions {
  keepaliveMs?: number;
  /** Aborted by the server (shutdown): the stream ends where it is. */
  signal?: AbortSignal;
  /** Extra headers (e.g. the task id of a streamed create). */
  headers?: Record<string, string>;
  /** Told about a source that failed (the stream then just ends). */
  onError?: (err: unknown) => void;
}

/**
 * Streams the frames `source(signal)` yields until it ends ('done'), the client
 * leaves ('client_gone'), the server closes ('aborted') or the source throws
 * ('failed'). `signal` aborts in every case but 'done', so the reader stops at once.
 * Never throws.
 */
export async function writeFrames(
  res: ServerResponse,
  source: (signal: AbortSignal) => AsyncIterable<string>,
  opts: FrameStreamOptions = {},
): Promise<FrameStreamEnd> {
  const ac = new AbortController();
  let end: FrameStreamEnd | null = null;
  const stop = (why: FrameStreamEnd): void => {
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

  let timer: NodeJS.Timeout | null = null;
  try {
    res.writeHead(200, { ...SSE_HEADERS, ...opts.headers });
    res.flushHeaders();
    timer = setInterval(() => {
      // Skip a beat rather than queue comments behind a full buffer.
      if (!res.writableNeedDrain && !res.writableEnded) res.write(': keepalive\n\n');
    }, opts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS);
    timer.unref();
    if (!ac.signal.aborted) {
      let written = true;
      for await (const frame of source(ac.signal)) {
        if (!(written = await write(frame))) break;
      }
      // A write that failed without an abort: the socket died before 'close' fired.
      if (!ac.signal.aborted) end ??= written ? 'done' : 'client_gone';
    }
  } catch (err) {
    // A failed read (store error) or a write on a dead socket: end the stream; a
    // client reconnects (Last-Event-ID / starting_after) and resumes without loss.
    if (!ac.signal.aborted) {
      end ??= 'failed';
      opts.onError?.(err);
    }
  } finally {
    if (timer !== null) clearInterval(timer);
    opts.signal?.removeEventListener('abort', onServerAbort);
    res.off('close', onClose);
    end ??= 'aborted';
    ac.abort();
    if (!res.writableEnded) res.end();
  }
  return end;
}

export type SseEnd = 'terminal' | 'client_gone' | 'aborted' | 'source_ended';
export type SseOptions = FrameStreamOptions;

/**
 * Streams a task's events until its terminal event, the client leaving, or
 * `opts.signal` (server closing). Never throws: a failing source ends the stream.
 */
export async function streamSse(
  res: ServerResponse,
  source: (signal: AbortSignal) => AsyncIterable<TaskEvent>,
  opts: SseOptions = {},
): Promise<SseEnd> {
  let sawTerminal = false;
  const end = await writeFrames(
    res,
    async function* (signal) {
      for await (const e of source(signal)) {
        yield formatSseEvent(e);
        if (isTerminalEvent(e)) {
          sawTerminal = true;
          return;
        }
      }
    },
    opts,
  );
  if (end === 'done') return sawTerminal ? 'terminal' : 'source_ended';
  return end === 'failed' ? 'source_ended' : end;
}
