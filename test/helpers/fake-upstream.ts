// A fake OpenAI-compatible upstream: a real node:http server on 127.0.0.1:0 that
// streams `chat.completion.chunk` SSE tokens slowly. It records every request body,
// when each response was abandoned by the client and its socket closed, and how many
// tokens it wrote after the client went away — so tests can prove that a cancel
// closes the upstream connection instead of letting the model run on.

import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type UpstreamBehaviour =
  /** Stream `tokens` one every `intervalMs`, then finish, usage and [DONE]. */
  | 'stream'
  /** Answer `status` (default 500) with an OpenAI-style error body. */
  | 'error'
  /** Destroy the socket before any response. */
  | 'reset'
  /** Stream `resetAfter` tokens, then destroy the socket. */
  | 'reset-mid'
  /** Stream `resetAfter` tokens, then an error chunk (`errorMessage`), and end. */
  | 'error-mid'
  /** Accept the request and never answer. */
  | 'hang'
  /** 200 text/event-stream whose data lines are not JSON. */
  | 'malformed';

export interface FakeUpstreamOptions {
  behaviour?: UpstreamBehaviour;
  tokens?: string[];
  intervalMs?: number;
  status?: number;
  errorMessage?: string;
  resetAfter?: number;
  /** Sent as `retry-after-ms` on error answers, so AI SDK retries are fast in tests. */
  retryAfterMs?: number;
  usage?: { prompt_tokens: number; completion_tokens: number };
}

export interface UpstreamRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: unknown;
  receivedAt: number;
  tokensWritten: number;
  /** Tokens written after the client went away (should stay 0: a real server stops generating). */
  tokensAfterClientGone: number;
  /** performance.now() when the client abandoned the response before it ended, else null. */
  clientGoneAt: number | null;
  /** performance.now() when the TCP socket closed, else null. */
  socketClosedAt: number | null;
  /** The response ended normally. */
  completed: boolean;
}

export interface FakeUpstream {
  /** Base URL including `/v1`, as given to an OpenAI-compatible client. */
  readonly baseURL: string;
  readonly origin: string;
  readonly requests: UpstreamRequest[];
  /** Options for the next requests; change them between calls. */
  options: FakeUpstreamOptions;
  /** Resolves once `n` requests have arrived (body read). */
  waitForRequests(n: number, timeoutMs?: number): Promise<UpstreamRequest>;
  /** Resolves once the request's socket has closed. */
  waitForSocketClose(req: UpstreamRequest, timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
}

export const DEFAULT_TOKENS = ['Hello', ' there', ',', ' this', ' is', ' a', ' fake', ' upstream', ' answer', '.'];

export async function startFakeUpstream(initial: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const requests: UpstreamRequest[] = [];
  const sockets = new Set<Socket>();
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };

  const upstream: FakeUpstream = {
    baseURL: '',
    origin: '',
    requests,
    options: { ...initial },
    waitForRequests: (n, timeoutMs = 5000) =>
      waitFor(() => (requests.length >= n ? requests[n - 1]! : undefined), timeoutMs, `${n} upstream requests`),
    waitForSocketClose: (req, timeoutMs = 5000) =>
      waitFor(() => req.socketClosedAt ?? undefined, timeoutMs, 'the upstream socket to close'),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  function waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const now = check();
      if (now !== undefined) return resolve(now);
      const timer = setTimeout(() => {
        waiters.delete(onChange);
        reject(new Error(`fake upstream: timed out waiting for ${what}`));
      }, timeoutMs);
      const onChange = (): void => {
        const v = check();
        if (v === undefined) return;
        clearTimeout(timer);
        waiters.delete(onChange);
        resolve(v);
      };
      waiters.add(onChange);
    });
  }

  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      let body: unknown = raw;
      try {
        body = JSON.parse(raw);
      } catch {
        // keep the raw text
      }
      const rec: UpstreamRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        receivedAt: performance.now(),
        tokensWritten: 0,
        tokensAfterClientGone: 0,
        clientGoneAt: null,
        socketClosedAt: null,
        completed: false,
      };
      requests.push(rec);
      const socket = req.socket;
      if (socket.destroyed) rec.socketClosedAt = performance.now();
      else
        socket.once('close', () => {
          rec.socketClosedAt = performance.now();
          notify();
        });
      res.on('close', () => {
        if (!res.writableFinished && rec.clientGoneAt === null) rec.clientGoneAt = performance.now();
        notify();
      });
      notify();
      respond(rec, req, res, { ...upstream.options });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  // Keep-alive sockets would otherwise hold `close()` open.
  server.keepAliveTimeout = 500;

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  Object.assign(upstream, { origin, baseURL: `${origin}/v1` });
  return upstream;
}

function respond(rec: UpstreamRequest, req: IncomingMessage, res: ServerResponse, o: FakeUpstreamOptions): void {
  const behaviour = o.behaviour ?? 'stream';
  if (behaviour === 'reset') {
    req.socket.destroy();
    return;
  }
  if (behaviour === 'hang') return;
  if (behaviour === 'error') {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (o.retryAfterMs !== undefined) headers['retry-after-ms'] = String(o.retryAfterMs);
    res.writeHead(o.status ?? 500, headers);
    res.end(
      JSON.stringify({
        error: { message: o.errorMessage ?? 'fake upstream exploded', type: 'server_error', code: null },
      }),
    );
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  if (behaviour === 'malformed') {
    res.write('data: {this is not json\n\n');
    res.write('data: {"also": "not a chunk"}\n\n');
    res.end('data: [DONE]\n\n');
    rec.completed = true;
    return;
  }

  const tokens = o.tokens ?? DEFAULT_TOKENS;
  const model = (rec.body as { model?: string } | null)?.model ?? 'fake';
  const chunk = (delta: object, finish: string | null, extra: object = {}): string =>
    `data: ${JSON.stringify({
      id: 'chatcmpl-fake',
      object: 'chat.completion.chunk',
      created: 1_700_000_000,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
      ...extra,
    })}\n\n`;
  const gone = (): boolean => rec.clientGoneAt !== null || res.destroyed;
  let i = 0;
  const interval = o.intervalMs ?? 20;
  const tick = (): void => {
    if (gone()) return; // a real server stops generating when the client leaves
    if (behaviour === 'reset-mid' && i >= (o.resetAfter ?? 2)) {
      req.socket.destroy();
      return;
    }
    if (behaviour === 'error-mid' && i >= (o.resetAfter ?? 2)) {
      res.end(`data: ${JSON.stringify({ error: { message: o.errorMessage ?? 'fake upstream exploded' } })}\n\n`);
      return;
    }
    if (i < tokens.length) {
      res.write(chunk(i === 0 ? { role: 'assistant', content: tokens[i] } : { content: tokens[i] }, null));
      if (gone()) rec.tokensAfterClientGone++;
      rec.tokensWritten++;
      i++;
      timer = setTimeout(tick, interval);
      return;
    }
    res.write(chunk({}, 'stop'));
    const usage = o.usage ?? { prompt_tokens: 7, completion_tokens: tokens.length };
    res.write(
      `data: ${JSON.stringify({
        id: 'chatcmpl-fake',
        object: 'chat.completion.chunk',
        created: 1_700_000_000,
        model,
        choices: [],
        usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
      })}\n\n`,
    );
    res.end('data: [DONE]\n\n');
    rec.completed = true;
  };
  let timer = setTimeout(tick, interval);
  res.on('close', () => clearTimeout(timer));
}

/** A port on 127.0.0.1 with nothing listening (bound, then released). */
export async function unusedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
