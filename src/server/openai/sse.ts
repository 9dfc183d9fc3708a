// Writes ready-made SSE frames (OpenAI's `data: {...}` chunks or `event:` + `data:`
// Responses events) on a raw response. Same rules as the task event stream: stop
// reading the source the moment the client goes away, wait for 'drain' on a full
// socket, send a comment line while nothing happens, end on server close.

import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { SSE_HEADERS } from '../sse.ts';

export type FrameStreamEnd = 'done' | 'client_gone' | 'aborted' | 'failed';

export interface FrameStreamOptions {
  keepaliveMs: number;
  /** Aborted when the server closes. */
  signal: AbortSignal;
  headers?: Record<string, string>;
  onError?: (err: unknown) => void;
}

/** `data: <json>\n\n` (chat completion chunks). */
export const dataFrame = (data: unknown): string => `data: ${JSON.stringify(data)}\n\n`;

/** `event: <type>\ndata: <json>\n\n` (Responses stream events). */
export const eventFrame = (event: { type: string }): string =>
  `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;

/**
 * Streams the frames `source(signal)` yields until it ends ('done'), the client
 * leaves ('client_gone'), the server closes ('aborted') or the source throws
 * ('failed'). `signal` aborts in every case but 'done'. Never throws.
 */
export async function writeFrames(
  res: ServerResponse,
  source: (signal: AbortSignal) => AsyncIterable<string>,
  opts: FrameStreamOptions,
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
  if (opts.signal.aborted) stop('aborted');
  else opts.signal.addEventListener('abort', onServerAbort, { once: true });

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
      if (!res.writableNeedDrain && !res.writableEnded) res.write(': keepalive\n\n');
    }, opts.keepaliveMs);
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
    if (!ac.signal.aborted) {
      end ??= 'failed';
      opts.onError?.(err);
    }
  } finally {
    if (timer !== null) clearInterval(timer);
    opts.signal.removeEventListener('abort', onServerAbort);
    res.off('close', onClose);
    end ??= 'aborted';
    ac.abort();
    if (!res.writableEnded) res.end();
  }
  return end;
}
