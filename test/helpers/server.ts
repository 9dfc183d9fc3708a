// A real leash server in-process: temp SQLite file, port 0, silent logs.
// Tests talk to it with global fetch, like any client would.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startServer } from '../../src/cli/start-server.ts';
import type { RunningServer, StartServerOptions } from '../../src/cli/start-server.ts';
import type { Runtime } from '../../src/runtime/runtime.ts';
import type { Store } from '../../src/store/store.ts';

export interface TestServer {
  url: string;
  store: Store;
  runtime: Runtime;
  server: RunningServer;
  close(): Promise<void>;
}

export interface TestServerOptions extends Omit<StartServerOptions, 'db' | 'port' | 'host' | 'logger'> {
  /** LEASH_LOG_LEVEL-style level for debugging a test (default silent). */
  logLevel?: string;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const { logLevel, ...rest } = opts;
  const logger = pino({ level: logLevel ?? process.env.LEASH_TEST_LOG_LEVEL ?? 'silent' });
  const { server, close } = await startOnTempDb('leash-http-', logger, rest);
  return { url: server.url, store: server.store, runtime: server.runtime, server, close };
}

/**
 * startServer on 127.0.0.1, port 0, a fresh SQLite file in a temp directory and no
 * shutdown grace; close() (idempotent) stops it and removes the directory.
 */
export async function startOnTempDb(
  prefix: string,
  logger: StartServerOptions['logger'],
  opts: Omit<StartServerOptions, 'db' | 'port' | 'host' | 'logger'>,
): Promise<{ server: RunningServer; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  let server: RunningServer;
  try {
    server = await startServer({
      ...opts,
      host: '127.0.0.1',
      port: 0,
      db: join(dir, 'leash.db'),
      logger,
      runtime: { shutdownGraceMs: 0, ...opts.runtime },
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let closed = false;
  return {
    server,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await server.close({ graceMs: 0 });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/** fetch + JSON body, with the status and headers at hand. */
export async function api(
  base: string,
  method: string,
  path: string,
  opts: { body?: unknown; rawBody?: string; headers?: Record<string, string>; key?: string; signal?: AbortSignal } = {},
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read whatever JSON came back
): Promise<{ status: number; headers: Headers; body: any }> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.key !== undefined) headers.authorization = `Bearer ${opts.key}`;
  let payload: string | undefined;
  if (opts.rawBody !== undefined) payload = opts.rawBody;
  else if (opts.body !== undefined) {
    payload = JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, {
    method,
    headers,
    ...(payload !== undefined && { body: payload }),
    ...(opts.signal !== undefined && { signal: opts.signal }),
  });
  const text = await res.text();
  let body: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('application/json') && text !== '') body = JSON.parse(text);
  return { status: res.status, headers: res.headers, body };
}

export interface SseFrame {
  id: number | null;
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed event JSON
  data: any;
}

/**
 * Reads an SSE response until it ends (or `until` returns true), parsing frames.
 * Comment lines are counted, not returned.
 */
export async function readSse(
  res: Response,
  opts: { until?: (f: SseFrame, all: SseFrame[]) => boolean; onComment?: (line: string) => void } = {},
): Promise<SseFrame[]> {
  const frames: SseFrame[] = [];
  if (res.body === null) return frames;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let sep: number;
      while ((sep = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, sep);
        buf = buf.slice(sep + 2);
        let id: number | null = null;
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) opts.onComment?.(line);
          else if (line.startsWith('id: ')) id = Number(line.slice(4));
          else if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data.push(line.slice(6));
        }
        if (data.length === 0) continue;
        const frame = { id, event, data: JSON.parse(data.join('\n')) };
        frames.push(frame);
        if (opts.until?.(frame, frames)) return frames;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return frames;
}

/** Polls `fn` until it returns a truthy value (generous bound: these are not timing tests). */
export async function eventually<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
