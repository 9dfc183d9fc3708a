// One call of a gguf model: a context of its own (disposed when the call ends) on the
// shared loaded model, the prompt evaluated a batch at a time, then the token loop.
//
// Cancel: the token loop checks the abort signal before and after every token and
// between prompt batches, so generation stops between tokens (a token being computed
// finishes first). As with the other providers, an aborted stream ends by throwing the
// signal's reason, with no finish part. Usage counts the prompt's tokens as input and
// every sampled token (the end-of-generation one included) as output.

import type { LlamaContext } from 'node-llama-cpp';
import { LeashError } from '../../core/errors.ts';
import type { Model, ModelCallOptions, ModelStreamPart } from '../model.ts';
import { errorText } from '../error-text.ts';
import { assertGgufFile, notLoadable } from './files.ts';
import { acquireGgufModel, loadNlc, stats, type GgufLoadFailure } from './loaded-models.ts';
import { AnswerFilter, StreamDetokenizer, buildPrompt } from './prompt.ts';
import { GGUF_DEFAULT_LIMITS, type GgufLimits, type GgufSpec } from './spec.ts';

const DEFAULT_TEMPERATURE = 0.8;

/** A model on a file already located (`spec.path` is trusted: it comes from locateModelFile or a test). */
export function createGgufModel(
  id: string,
  spec: GgufSpec,
  env: NodeJS.ProcessEnv = process.env,
  limits: GgufLimits = GGUF_DEFAULT_LIMITS,
  onLoadFailure?: GgufLoadFailure,
): Model {
  return { id, stream: (call) => ggufStream(id, spec, call, env, limits, onLoadFailure) };
}

async function* ggufStream(
  id: string,
  spec: GgufSpec,
  call: ModelCallOptions,
  env: NodeJS.ProcessEnv,
  limits: GgufLimits,
  onLoadFailure: GgufLoadFailure | undefined,
): AsyncGenerator<ModelStreamPart> {
  const signal = call.abortSignal;
  signal?.throwIfAborted();
  const { path, options } = spec;
  // Removed or replaced since resolve: the same answer as a name that never was there.
  try {
    assertGgufFile(path);
  } catch (e) {
    throw notLoadable(e);
  }
  const nlc = await untilAborted(loadNlc(), signal);
  const lease = acquireGgufModel(path, env, limits, onLoadFailure);
  let context: LlamaContext | undefined;
  let counted = false;
  try {
    const model = await untilAborted(lease.model, signal);
    signal?.throwIfAborted();

    stats.activeCalls++;
    counted = true;
    const maxContext = Math.min(model.trainContextSize || limits.maxContext, limits.maxContext);
    try {
      context = await model.createContext({
        contextSize: Math.min(options.ctx ?? maxContext, limits.maxContext),
        sequences: 1,
        // node-llama-cpp's default is at least 4 threads, which on a 2-core machine spins
        // ~50x slower than 2; the math cores are what llama.cpp can use.
        threads: options.threads ?? limits.threads ?? Math.max(1, model.llama.cpuMathCores),
        createSignal: signal,
      });
    } catch (e) {
      signal?.throwIfAborted();
      throw new LeashError('model_unavailable', `Cannot create a context for model "${id}": ${errorText(e)}`, {
        cause: e,
      });
    }
    signal?.throwIfAborted();

    const prompt = buildPrompt(nlc, model, call.messages);
    const contextSize = context.contextSize;
    if (prompt.tokens.length === 0 || prompt.tokens.length >= contextSize) {
      throw new LeashError(
        'invalid_request',
        `The prompt is ${prompt.tokens.length} tokens; the context of model "${id}" holds ${contextSize}`,
      );
    }
    const usage = { input_tokens: prompt.tokens.length, output_tokens: 0 };
    const cap = call.maxTokens !== undefined && call.maxTokens >= 0 ? Math.floor(call.maxTokens) : Infinity;
    const budget = Math.min(cap, contextSize - prompt.tokens.length);
    if (budget === 0) {
      yield { type: 'finish', finishReason: 'length', usage };
      return;
    }

    const sequence = context.getSequence();
    // The prompt but its last token, a batch at a time, so a cancel need not wait for all of it.
    const head = prompt.tokens.slice(0, -1);
    for (let i = 0; i < head.length; i += context.batchSize) {
      await sequence.evaluateWithoutGeneratingNewTokens(head.slice(i, i + context.batchSize));
      signal?.throwIfAborted();
    }

    const temperature = call.temperature ?? options.temp ?? DEFAULT_TEMPERATURE;
    const sampling =
      temperature > 0 ? { temperature, topK: 40, topP: 0.95, minP: 0.05, seed: options.seed } : { temperature: 0 };

    let finishReason: 'stop' | 'length' = 'length';
    const decoder = new StreamDetokenizer(model, prompt.tokens);
    const answer = new AnswerFilter(prompt.stopTexts);

    for await (const token of sequence.evaluate([prompt.tokens.at(-1)!], sampling)) {
      stats.generatedTokens++;
      signal?.throwIfAborted();
      usage.output_tokens++;
      if (model.isEogToken(token) || prompt.stopTokens.has(token)) {
        finishReason = 'stop';
        break;
      }
      const atLimit = usage.output_tokens >= budget;
      const out = answer.push(decoder.push(token) + (atLimit ? decoder.flush() : ''));
      if (out.text !== '') {
        yield { type: 'text-delta', text: out.text };
        // The consumer may have cancelled while it had the token: do not compute another.
        signal?.throwIfAborted();
      }
      if (out.stop) {
        finishReason = 'stop';
        break;
      }
      if (atLimit) break;
    }
    signal?.throwIfAborted();
    // Bytes of a character the answer ended in, and text held back as a possible stop.
    const tail = answer.push(decoder.flush());
    const rest = tail.stop ? tail.text : tail.text + answer.flush();
    if (tail.stop) finishReason = 'stop';
    if (rest !== '') yield { type: 'text-delta', text: rest };
    yield { type: 'finish', finishReason, usage };
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    if (e instanceof LeashError) throw e;
    throw new LeashError('upstream_error', `Model "${id}" failed: ${errorText(e)}`, { cause: e });
  } finally {
    if (counted) stats.activeCalls--;
    await context?.dispose();
    lease.release();
  }
}

/** Waits for `p` but gives up with the signal's reason when it aborts (the shared load continues for others). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
