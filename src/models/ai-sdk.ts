// Providers behind the Model seam through the AI SDK's `streamText` (anthropic:; the
// OpenAI-compatible ones have a leaner path, openai-compatible.ts; see providers.ts).
//
// The caller's abortSignal reaches fetch through streamText (joined with one that fires
// when the consumer stops reading): an abort closes the upstream socket at once. As with the simulated model, an aborted
// stream ends by throwing the signal's reason (no finish part); callers count the
// deltas they received. Upstream failures become LeashErrors:
//   upstream_error         the provider answered with an HTTP error (or failed otherwise)
//   upstream_unreachable   no connection, or the connection was lost mid-answer
//   upstream_bad_response  the provider answered 2xx with something that is not a valid stream
//
// The `ai` and provider packages are imported on the first call, not at startup, so
// a server that only uses `simulated` never loads them.

import type { LanguageModel } from 'ai';
import { noteUpstreamClosed } from '../core/cancel.ts';
import { LeashError } from '../core/errors.ts';
import type { Model, ModelCallOptions, ModelStreamPart } from './model.ts';
import { clip } from './error-text.ts';

export interface AiSdkModelConfig {
  /** The spec, e.g. `openai:gpt-4o-mini`. */
  id: string;
  /** Provider name for error messages, e.g. `openai`. */
  provider: string;
  /** Base URL for error messages. */
  endpoint: string;
  /** Builds the AI SDK model (called on each stream; imports the provider package lazily). */
  create(): Promise<LanguageModel>;
  /** AI SDK retries on 429/5xx/network errors before the first token (default 2). */
  maxRetries?: number;
}

export function createAiSdkModel(config: AiSdkModelConfig): Model {
  return { id: config.id, stream: (call) => aiSdkStream(config, call) };
}

type AiModule = typeof import('ai');

async function* aiSdkStream(config: AiSdkModelConfig, call: ModelCallOptions): AsyncGenerator<ModelStreamPart> {
  const signal = call.abortSignal;
  signal?.throwIfAborted();
  const ai: AiModule = await import('ai');
  let deltas = 0;
  let finish: Extract<ModelStreamPart, { type: 'finish' }> | null = null;
  // Cancelling fullStream does not reach the socket, so a consumer that stops reading
  // early (break, or a throw in its loop) aborts this controller instead. The caller's
  // signal still aborts the request directly: AbortSignal.any follows it synchronously,
  // with the same reason.
  const stop = new AbortController();
  const requestSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  let ended = false;
  // The request is in flight from streamText until the stream ends: an abort then closes it.
  const onAbort = (): void => noteUpstreamClosed(signal!);
  try {
    const model = await config.create();
    signal?.throwIfAborted();
    signal?.addEventListener('abort', onAbort, { once: true });
    const result = ai.streamText({
      model,
      messages: call.messages,
      // leash builds these messages itself (task input, thread history); no injection risk to warn about.
      allowSystemInMessages: true,
      abortSignal: requestSignal,
      maxOutputTokens: call.maxTokens,
      temperature: call.temperature,
      maxRetries: config.maxRetries ?? 2,
      // Errors arrive as `error` parts below; the default handler would log them to the console.
      onError: () => {},
    });
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta') {
        if (part.text === '') continue;
        deltas++;
        yield { type: 'text-delta', text: part.text };
      } else if (part.type === 'error') {
        throw part.error;
      } else if (part.type === 'abort') {
        throw requestSignal.reason;
      } else if (part.type === 'finish') {
        finish = {
          type: 'finish',
          finishReason: mapFinishReason(part.finishReason),
          usage: {
            input_tokens: part.totalUsage.inputTokens ?? 0,
            output_tokens: part.totalUsage.outputTokens ?? deltas,
          },
        };
      }
    }
    ended = true;
  } catch (e) {
    // Whatever the upstream did after an abort, the answer is the abort.
    if (signal?.aborted) throw signal.reason;
    throw toUpstreamError(ai, e, config);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!ended) stop.abort(new DOMException('The consumer stopped reading the model stream.', 'AbortError'));
  }
  signal?.throwIfAborted();
  yield finish ?? { type: 'finish', finishReason: 'stop', usage: { input_tokens: 0, output_tokens: deltas } };
}

function mapFinishReason(r: string): 'stop' | 'length' | 'error' {
  return r === 'length' ? 'length' : r === 'error' ? 'error' : 'stop';
}

const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** The network error in `e`'s cause chain (undici's `terminated` / `fetch failed` included), if any. */
function findNetworkError(e: unknown): Error | null {
  const seen = new Set<unknown>();
  let cur = e;
  while (cur instanceof Error && !seen.has(cur)) {
    seen.add(cur);
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return cur;
    if (cur instanceof TypeError && /^(terminated|fetch failed|other side closed)$/i.test(cur.message)) {
      return findDeepest(cur);
    }
    cur = cur.cause;
  }
  return null;
}

/** The innermost Error in a cause chain: usually the one naming the socket problem. */
function findDeepest(e: Error): Error {
  let cur = e;
  const seen = new Set<Error>([e]);
  while (cur.cause instanceof Error && !seen.has(cur.cause)) {
    cur = cur.cause;
    seen.add(cur);
  }
  return cur;
}

/** Maps whatever the AI SDK threw to a LeashError with an upstream_* code and a clear message. */
export function toUpstreamError(
  ai: AiModule,
  e: unknown,
  config: Pick<AiSdkModelConfig, 'provider' | 'endpoint'>,
): LeashError {
  if (e instanceof LeashError) return e;
  const where = `${config.provider} at ${config.endpoint}`;
  const details = (extra: object = {}): object => ({ provider: config.provider, ...extra });

  if (ai.RetryError.isInstance(e)) {
    const inner = toUpstreamError(ai, e.lastError, config);
    return new LeashError(inner.code, `${inner.message} (gave up after ${e.errors.length} attempts)`, {
      details: inner.details,
      cause: e,
    });
  }
  if (ai.APICallError.isInstance(e)) {
    const net = findNetworkError(e);
    if (net) {
      // No status: the connection never got an answer. A status: it broke mid-answer.
      const what = e.statusCode === undefined ? `Cannot reach ${where}` : `Lost the connection to ${where}`;
      return new LeashError('upstream_unreachable', clip(`${what}: ${net.message}`), { details: details(), cause: e });
    }
    if (unreadableFirstEvent(e)) {
      return new LeashError(
        'upstream_bad_response',
        clip(`${where} sent a response that is not a valid stream: ${e.message}`),
        { details: details(), cause: e },
      );
    }
    if (e.statusCode !== undefined && (e.statusCode < 200 || e.statusCode > 299)) {
      return new LeashError('upstream_error', clip(`${where} answered HTTP ${e.statusCode}: ${e.message}`), {
        details: details({ status: e.statusCode }),
        cause: e,
      });
    }
    if (e.statusCode !== undefined) {
      return new LeashError(
        'upstream_bad_response',
        clip(`${where} sent a response leash could not read: ${e.message}`),
        {
          details: details({ status: e.statusCode }),
          cause: e,
        },
      );
    }
    return new LeashError('upstream_unreachable', clip(`Cannot reach ${where}: ${e.message}`), {
      details: details(),
      cause: e,
    });
  }
  if (
    ai.JSONParseError.isInstance(e) ||
    ai.TypeValidationError.isInstance(e) ||
    ai.InvalidResponseDataError.isInstance(e) ||
    ai.EmptyResponseBodyError.isInstance(e) ||
    ai.NoContentGeneratedError.isInstance(e) ||
    ai.NoOutputGeneratedError.isInstance(e)
  ) {
    return new LeashError(
      'upstream_bad_response',
      clip(`${where} sent a response that is not a valid stream: ${e.message}`),
      {
        details: details(),
        cause: e,
      },
    );
  }
  const net = findNetworkError(e);
  if (net) {
    return new LeashError('upstream_unreachable', clip(`Lost the connection to ${where}: ${net.message}`), {
      details: details(),
      cause: e,
    });
  }
  const message = e instanceof Error ? e.message || e.name : (errorBodyMessage(e) ?? String(e));
  return new LeashError('upstream_error', clip(`${where} failed: ${message}`), { details: details(), cause: e });
}

/**
 * Anthropic's provider reads the first event before it hands the stream on, and reports
 * one it cannot parse as an APICallError with a made-up status 500 and the parse error
 * as its body, although the upstream answered 200 with an event stream: that is a bad
 * response, not an HTTP error.
 */
function unreadableFirstEvent(e: { responseHeaders?: Record<string, string>; responseBody?: string }): boolean {
  if (!/^text\/event-stream\b/i.test(e.responseHeaders?.['content-type'] ?? '')) return false;
  try {
    const name = (JSON.parse(e.responseBody ?? '') as { name?: unknown } | null)?.name;
    return name === 'AI_JSONParseError' || name === 'AI_TypeValidationError';
  } catch {
    return false;
  }
}

/**
 * The message of a provider's error object that the AI SDK hands on as it came (Anthropic's
 * mid-stream `error` event is `{type: 'overloaded_error', message: 'Overloaded'}`, not an Error).
 */
function errorBodyMessage(e: unknown): string | null {
  if (typeof e !== 'object' || e === null) return null;
  const { message, type } = e as { message?: unknown; type?: unknown };
  if (typeof message !== 'string' || message === '') return null;
  return typeof type === 'string' && type !== '' ? `${message} (${type})` : message;
}
