// Server-Sent Events on a raw response, for every stream leash writes: task event
// streams (`id: <seq>\nevent: <type>\ndata: <json>`, where `data` is the event's
// data plus task_id and seq, so a client that only reads `data` still knows where
// it is) and the OpenAI streams (`data: {...}` chunks, `event:` + `data:` Responses
// events). One writer: it stops reading (aborts the source's signal) as soon as the
// client goes away, waits for 'drain' when the socket buffer is full, and sends a
// comment line while nothing happens so proxies keep the connection open.

import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { TaskEvent } from '../core/types.ts';
import { isTerminalEvent } from '../core/types.ts';

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

// Keepalive comments: one timer per interval for all open streams, not one per
// stream (10,000 idle streams would otherwise hold 10,000 timers and closures).
const keepalives = new Map<number, { timer: NodeJS.Timeout; streams: Set<ServerResponse> }>();

function keepAlive(res: ServerResponse, ms: number): () => void {
  let k = keepalives.get(ms);
  if (!k) {
    const streams = new Set<ServerResponse>();
    const timer = setInterval(() => {
      // Skip a beat rather than queue comments behind a full buffer.
      for (const r of streams) if (!r.writableNeedDrain && !r.writableEnded) r.write(': keepalive\n\n');
    }, ms);
    timer.unref();
    keepalives.set(ms, (k = { timer, streams }));
  }
  const entry = k;
  entry.streams.add(res);
  return () => {
    entry.streams.delete(res);
    if (entry.streams.size === 0 && keepalives.get(ms) === entry) {
      clearInterval(entry.timer);
      keepalives.delete(ms);
    }
  };
}

/**
 * Streams what `source(signal)` yields, each item turned into frames by `format`
 * (and ending the stream after an item for which `last` is true), until the source
 * ends ('done'), the client leaves ('client_gone'), the server closes ('aborted') or
 * the source throws ('failed'). `signal` aborts in every case but 'done', so the
 * reader stops at once. Never throws.
 */
export function writeFrames(
  res: ServerResponse,
  source: (signal: AbortSignal) => AsyncIterable<string>,
  opts?: FrameStreamOptions,
): Promise<FrameStreamEnd>;
export function writeFrames<T>(
  res: ServerResponse,
  source: (signal: AbortSignal) => AsyncIterable<T>,
  opts: FrameStreamOptions & { format: (item: T) => string; last?: (item: T) => boolean },
): Promise<FrameStreamEnd>;
export async function writeFrames<T>(
  res: ServerResponse,
  source: (signal: AbortSignal) => AsyncIterable<T>,
  opts: FrameStreamOptions & { format?: (item: T) => string; last?: (item: T) => boolean } = {},
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
  const format = opts.format ?? ((item: T): string => item as string);

  let unkeep: (() => void) | null = null;
  try {
    res.writeHead(200, { ...SSE_HEADERS, ...opts.headers });
    res.flushHeaders();
    unkeep = keepAlive(res, opts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS);
    if (!ac.signal.aborted) {
      let written = true;
      for await (const item of source(ac.signal)) {
        // Gone, or a full buffer that never drained: stop reading.
        if (ac.signal.aborted || res.destroyed || res.writableEnded) {
          written = false;
          break;
        }
        if (!res.write(format(item))) {
          try {
            await once(res, 'drain', { signal: ac.signal });
          } catch {
            written = false;
            break;
          }
        }
        if (opts.last?.(item)) break;
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
    unkeep?.();
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
 * `opts.signal` (server closing). Never rejects: a failing source ends the stream.
 */
export function streamSse(
  res: ServerResponse,
  source: (signal: AbortSignal) => AsyncIterable<TaskEvent>,
  opts: SseOptions = {},
): Promise<SseEnd> {
  let sawTerminal = false;
  const last = (e: TaskEvent): boolean => (sawTerminal = isTerminalEvent(e));
  return writeFrames(res, source, { ...opts, format: formatSseEvent, last }).then((end) => {
    if (end === 'done') return sawTerminal ? 'terminal' : 'source_ended';
    return end === 'failed' ? 'source_ended' : end;
  });
}

/**
 * Headers already set on the reply (CORS, security headers) for a hijacked stream,
 * which writes its head on the raw response: without them an allowed origin could
 * not read the stream.
 */
export function carriedHeaders(reply: FastifyReply): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(reply.getHeaders())) {
    if (v === undefined || k === 'content-type' || k === 'content-length') continue;
    out[k] = Array.isArray(v) ? v.join(', ') : String(v);
  }
  return out;
}
