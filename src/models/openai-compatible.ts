// OpenAI-compatible chat streaming (`openai:` and `ollama:` models): POST
// /chat/completions with `stream: true` over node:http(s), the SSE answer parsed by
// eventsource-parser (the parser the AI SDK itself uses) and each chunk by JSON.parse.
//
// Why not the AI SDK's provider here (anthropic: still uses it): its stream goes
// through a chain of web-stream transforms and a zod validation per chunk, which
// capped a relayed stream at ~0.2× of what the upstream sends (bench/relay.ts). This
// path reads what the upstream sends as fast as it sends it. It is small on purpose:
// one request, read until `[DONE]`; what it does not understand is an error.
//
// Stopping: the caller's signal (or the consumer leaving the loop) destroys the
// request, which closes the upstream socket at once — a model server stops
// generating when its client goes away. An aborted stream throws the signal's reason.
// Failures become LeashErrors:
//   upstream_error         the server answered with an HTTP error (its message quoted)
//   upstream_unreachable   no connection, or the connection was lost mid-answer
//   upstream_bad_response  a 2xx answer that is not a chat completion stream

import type { ClientRequest, IncomingMessage } from 'node:http';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { noteUpstreamClosed, sleep } from '../core/cancel.ts';
import { LeashError } from '../core/errors.ts';
import type { Model, ModelCallOptions, ModelStreamPart } from './model.ts';
import { clip } from './error-text.ts';

export interface OpenAiCompatibleConfig {
  /** The spec, e.g. `openai:gpt-4o-mini`. */
  id: string;
  /** Provider name for error messages, e.g. `openai`. */
  provider: string;
  /** Base URL, e.g. `https://api.openai.com/v1`. */
  baseURL: string;
  /** The model name sent upstream. */
  model: string;
  apiKey?: string;
  /** Retries on 408/409/429/5xx and connection failures before the first byte of an answer (default 2). */
  maxRetries?: number;
}

// Connections are kept alive across calls (a TLS handshake to a remote API costs more than a token).
const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/** Backoff between attempts: 2 s, then 4 s, … unless the server says when (Retry-After), as the AI SDK does. */
const INITIAL_DELAY_MS = 2000;
const MAX_SERVER_DELAY_MS = 60_000;
const MAX_ERROR_BODY = 64 * 1024;

export function createOpenAiCompatibleModel(config: OpenAiCompatibleConfig): Model {
  return { id: config.id, stream: (call) => streamChat(config, call) };
}

async function* streamChat(config: OpenAiCompatibleConfig, call: ModelCallOptions): AsyncGenerator<ModelStreamPart> {
  const signal = call.abortSignal;
  signal?.throwIfAborted();
  const where = `${config.provider} at ${config.baseURL}`;
  const body = JSON.stringify({
    model: config.model,
    messages: call.messages,
    stream: true,
    stream_options: { include_usage: true },
    ...(call.maxTokens !== undefined && { max_tokens: call.maxTokens }),
    ...(call.temperature !== undefined && { temperature: call.temperature }),
  });
  const { req, res } = await connectWithRetries(config, body, signal, where);

  // From here on, a cancel and a consumer that stops reading both end in `finally`,
  // which destroys the request: the upstream socket closes.
  const onAbort = (): void => {
    noteUpstreamClosed(signal!);
    req.destroy();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let text = '';
  let tokens = 0;
  let usage: { input_tokens: number; output_tokens: number } | null = null;
  let finishReason: 'stop' | 'length' | 'error' = 'stop';
  let done = false;
  let chunks = 0;
  let bad: LeashError | null = null;
  const parser = createParser({
    onEvent(ev: EventSourceMessage) {
      if (done || bad) return;
      if (ev.data === '[DONE]') {
        done = true;
        return;
      }
      let chunk: ChatChunk;
      try {
        chunk = JSON.parse(ev.data) as ChatChunk;
      } catch (e) {
        bad = badStream(where, `an event is not JSON (${clip(ev.data, 80)})`, e);
        return;
      }
      if (chunk === null || typeof chunk !== 'object') {
        bad = badStream(where, `an event is not a chat completion chunk (${clip(ev.data, 80)})`);
        return;
      }
      if (chunk.error) {
        bad = new LeashError('upstream_error', clip(`${where} failed mid-answer: ${errorText(chunk.error)}`), {
          details: { provider: config.provider },
        });
        return;
      }
      if (!Array.isArray(chunk.choices)) {
        bad = badStream(where, `an event is not a chat completion chunk (${clip(ev.data, 80)})`);
        return;
      }
      chunks++;
      const choice = chunk.choices[0];
      const content = choice?.delta?.content;
      if (typeof content === 'string' && content !== '') {
        text += content;
        tokens++;
      }
      if (choice?.finish_reason) finishReason = mapFinishReason(choice.finish_reason);
      if (chunk.usage && typeof chunk.usage.prompt_tokens === 'number') {
        usage = { input_tokens: chunk.usage.prompt_tokens, output_tokens: chunk.usage.completion_tokens ?? 0 };
      }
    },
  });

  let ended = false;
  try {
    res.setEncoding('utf8');
    try {
      for await (const piece of res) {
        parser.feed(piece as string);
        // Everything one network read carried is one delta: as fast as it arrived, no faster.
        if (text !== '') {
          const delta = text;
          text = '';
          yield { type: 'text-delta', text: delta };
        }
        if (bad) throw bad;
        if (done) break;
      }
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (e instanceof LeashError) throw e;
      throw new LeashError('upstream_unreachable', clip(`Lost the connection to ${where}: ${messageOf(e)}`), {
        details: { provider: config.provider },
        cause: e,
      });
    }
    signal?.throwIfAborted();
    if (!done && !res.complete) {
      // The socket closed before the answer ended (node:http may end the body quietly).
      throw new LeashError('upstream_unreachable', `Lost the connection to ${where}: the answer was cut off`, {
        details: { provider: config.provider },
      });
    }
    // A complete answer without `[DONE]` is still an answer (some servers omit it);
    // one without a single chunk is not (a base URL that serves something else).
    if (!done && chunks === 0) throw badStream(where, 'no chat completion chunk in the answer');
    ended = true;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!ended || !res.complete) req.destroy();
  }
  yield {
    type: 'finish',
    finishReason,
    usage: usage ?? { input_tokens: 0, output_tokens: tokens },
  };
}

interface ChatChunk {
  choices?: Array<{ delta?: { content?: unknown }; finish_reason?: string | null }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: unknown;
}

function mapFinishReason(r: string): 'stop' | 'length' | 'error' {
  return r === 'length' ? 'length' : r === 'error' ? 'error' : 'stop';
}

/**
 * Sends the request until an attempt gets a 2xx answer (its headers), retrying what
 * a retry can fix. Server-given delays (Retry-After) are honoured, which is why this
 * is a loop of its own rather than p-retry's fixed backoff.
 */
async function connectWithRetries(
  config: OpenAiCompatibleConfig,
  body: string,
  signal: AbortSignal | undefined,
  where: string,
): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  const maxRetries = config.maxRetries ?? 2;
  for (let attempt = 1; ; attempt++) {
    const r = await attemptOnce(config, body, signal, where);
    if ('res' in r) return r;
    const { error, retryable, retryAfterMs } = r;
    if (!retryable || attempt > maxRetries) {
      if (attempt === 1) throw error;
      throw new LeashError(error.code, `${error.message} (gave up after ${attempt} attempts)`, {
        details: error.details,
        cause: error,
      });
    }
    const backoff = INITIAL_DELAY_MS * 2 ** (attempt - 1);
    await sleep(
      retryAfterMs !== undefined && retryAfterMs >= 0 && retryAfterMs < MAX_SERVER_DELAY_MS ? retryAfterMs : backoff,
      signal,
    );
  }
}

type Attempt =
  { req: ClientRequest; res: IncomingMessage } | { error: LeashError; retryable: boolean; retryAfterMs?: number };

function attemptOnce(
  config: OpenAiCompatibleConfig,
  body: string,
  signal: AbortSignal | undefined,
  where: string,
): Promise<Attempt> {
  return new Promise<Attempt>((resolve, reject) => {
    const url = new URL(`${config.baseURL.replace(/\/+$/, '')}/chat/completions`);
    const https = url.protocol === 'https:';
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      'content-length': String(Buffer.byteLength(body)),
    };
    if (config.apiKey) headers.authorization = `Bearer ${config.apiKey}`;
    const req = (https ? httpsRequest : httpRequest)(url, {
      method: 'POST',
      headers,
      agent: https ? agents.https : agents.http,
    });
    const onAbort = (): void => {
      noteUpstreamClosed(signal!);
      req.destroy();
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = (a: Attempt): void => {
      signal?.removeEventListener('abort', onAbort);
      resolve(a);
    };
    req.on('error', (e) => {
      if (signal?.aborted) return;
      signal?.removeEventListener('abort', onAbort);
      resolve({
        error: new LeashError('upstream_unreachable', clip(`Cannot reach ${where}: ${messageOf(e)}`), {
          details: { provider: config.provider },
          cause: e,
        }),
        retryable: true,
      });
    });
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const type = String(res.headers['content-type'] ?? '');
      if (status >= 200 && status < 300 && /^text\/event-stream\b/i.test(type)) return settle({ req, res });
      if (status >= 200 && status < 300) {
        req.destroy();
        return settle({
          error: badStream(where, `expected an event stream, got ${type || 'no content-type'} (HTTP ${status})`),
          retryable: false,
        });
      }
      // An HTTP error: read its (bounded) body for the server's own message.
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (text.length < MAX_ERROR_BODY) text += d;
      });
      res.on('error', () => {});
      res.on('close', () => {
        const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
        settle({
          error: new LeashError('upstream_error', clip(`${where} answered HTTP ${status}: ${httpErrorMessage(text)}`), {
            details: { provider: config.provider, status },
          }),
          retryable,
          retryAfterMs: retryAfter(res),
        });
      });
    });
    req.end(body);
  });
}

/** `retry-after-ms` (OpenAI's) or `retry-after` (seconds or an HTTP date), in ms. */
function retryAfter(res: IncomingMessage): number | undefined {
  const ms = Number(res.headers['retry-after-ms']);
  if (res.headers['retry-after-ms'] !== undefined && Number.isFinite(ms)) return ms;
  const h = res.headers['retry-after'];
  if (h === undefined) return undefined;
  const s = Number(h);
  if (Number.isFinite(s)) return s * 1000;
  const at = Date.parse(h);
  return Number.isNaN(at) ? undefined : at - Date.now();
}

/** The message of an OpenAI-style error body (`{error: {message}}`), or the body's text. */
function httpErrorMessage(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (j.error !== undefined) return errorText(j.error);
    if (typeof j.message === 'string') return j.message;
  } catch {
    // not JSON: the text itself
  }
  return text.trim() || '(no message)';
}

function errorText(e: unknown): string {
  if (typeof e === 'string') return e;
  if (e && typeof e === 'object' && typeof (e as { message?: unknown }).message === 'string') {
    return (e as { message: string }).message;
  }
  return JSON.stringify(e);
}

function badStream(where: string, what: string, cause?: unknown): LeashError {
  return new LeashError('upstream_bad_response', clip(`${where} sent a response that is not a valid stream: ${what}`), {
    cause,
  });
}

function messageOf(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  // node:http says "aborted" / "socket hang up"; the code says more.
  return typeof code === 'string' && !e.message.includes(code) ? `${e.message} (${code})` : e.message || e.name;
}
