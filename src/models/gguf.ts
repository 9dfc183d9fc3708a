// `gguf:<path>`: a local GGUF model run in-process with node-llama-cpp (llama.cpp).
//
//   gguf:./models/qwen.gguf?threads=4&ctx=2048&temp=0.7&seed=1
//     threads  CPU threads per call (default: the CPU's math cores)
//     ctx      context size in tokens (default: the model's training context, at most 4096)
//     temp     default temperature when the call gives none (default 0.8; 0 = greedy)
//     seed     sampling seed, for repeatable output at temp > 0 (default: random)
// A relative path is resolved against the working directory. LEASH_GGUF_GPU picks a
// GPU backend (`auto`, `cuda`, `vulkan`, `metal`); the default is CPU only.
//
// node-llama-cpp uses the prebuilt binaries from its @node-llama-cpp/* npm packages
// (`build: 'never'`, `skipDownload: true`): nothing is built or downloaded at run time.
// It is imported on the first call, so servers that never use `gguf:` never load it.
//
// Each model file is loaded once per process (lazily; concurrent first calls share the
// load) and stays loaded. Each call gets its own context, disposed when the call ends.
// The prompt is the model's chat template when the file has one (node-llama-cpp's
// chat wrappers render it), else a plain `role: content` transcript.
//
// Cancel: the token loop checks the abort signal before and after every token and
// between prompt batches, so generation stops between tokens (a token being computed
// finishes first). As with the other providers, an aborted stream ends by throwing the
// signal's reason, with no finish part. Usage counts the prompt's tokens as input and
// every sampled token (the end-of-generation one included) as output.

import { statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { ChatHistoryItem, Llama, LlamaContext, LlamaModel, Token } from 'node-llama-cpp';
import { LeashError } from '../runtime/errors.ts';
import type { ChatMessage, Model, ModelCallOptions, ModelStreamPart } from './model.ts';
import type { ModelProvider } from './registry.ts';

type Nlc = typeof import('node-llama-cpp');

export interface GgufOptions {
  threads?: number;
  ctx?: number;
  temp?: number;
  seed?: number;
}

export interface GgufSpec {
  /** Absolute path of the model file. */
  path: string;
  options: GgufOptions;
}

const DEFAULT_TEMPERATURE = 0.8;
const MAX_DEFAULT_CTX = 4096;
/** Tokens decoded together at most while waiting for the rest of a UTF-8 character. */
const MAX_PENDING_TOKENS = 4;

const OPTION_RULES: Record<keyof GgufOptions, { min: number; max: number; integer: boolean }> = {
  threads: { min: 0, max: 1024, integer: true },
  ctx: { min: 16, max: 1 << 20, integer: true },
  temp: { min: 0, max: 2, integer: false },
  seed: { min: 0, max: 2 ** 32 - 1, integer: true },
};

/** Parses `<path>[?threads=&ctx=&temp=&seed=]` (the spec without `gguf:`). */
export function parseGgufSpec(name: string, spec: string, cwd: string = process.cwd()): GgufSpec {
  const q = name.indexOf('?');
  const file = (q === -1 ? name : name.slice(0, q)).trim();
  if (file === '') throw new LeashError('unknown_model', `Invalid model "${spec}": no GGUF file path`);
  const options: GgufOptions = {};
  for (const [key, value] of new URLSearchParams(q === -1 ? '' : name.slice(q + 1))) {
    const rule = OPTION_RULES[key as keyof GgufOptions] as (typeof OPTION_RULES)[keyof GgufOptions] | undefined;
    if (!rule) {
      throw new LeashError(
        'unknown_model',
        `Invalid model "${spec}": unknown option "${key}" (known: ${Object.keys(OPTION_RULES).join(', ')})`,
      );
    }
    const n = value.trim() === '' ? NaN : Number(value);
    if (!(Number.isFinite(n) && n >= rule.min && n <= rule.max && (!rule.integer || Number.isInteger(n)))) {
      throw new LeashError(
        'unknown_model',
        `Invalid model "${spec}": ${key} must be ${rule.integer ? 'an integer' : 'a number'} from ${rule.min} to ${rule.max}`,
      );
    }
    options[key as keyof GgufOptions] = n;
  }
  return { path: resolvePath(cwd, file), options };
}

function assertModelFile(path: string): void {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    // Missing or unreadable: reported below.
  }
  if (!isFile) throw new LeashError('model_unavailable', `GGUF model not found: ${path}`);
}

// ---- process-wide llama.cpp state (native resources: one per process) ----

let nlcPromise: Promise<Nlc> | null = null;
let llamaPromise: Promise<Llama> | null = null;
const models = new Map<string, Promise<LlamaModel>>();
/** Recent llama.cpp log lines: its load errors say why, the JS error only "Failed to load model". */
const llamaLog: string[] = [];
const stats = { loads: 0, activeCalls: 0, generatedTokens: 0 };

/** Counters for tests and metrics: model loads started, calls holding a context, tokens sampled. */
export function ggufStats(): { loads: number; loadedModels: number; activeCalls: number; generatedTokens: number } {
  return { ...stats, loadedModels: models.size };
}

const loadNlc = (): Promise<Nlc> => (nlcPromise ??= import('node-llama-cpp'));

function getSharedLlama(env: NodeJS.ProcessEnv): Promise<Llama> {
  if (!llamaPromise) {
    const p = (async (): Promise<Llama> => {
      const nlc = await loadNlc();
      const gpuEnv = env.LEASH_GGUF_GPU?.trim().toLowerCase();
      const gpu = gpuEnv === 'auto' || gpuEnv === 'cuda' || gpuEnv === 'vulkan' || gpuEnv === 'metal' ? gpuEnv : false;
      try {
        return await nlc.getLlama({
          gpu,
          build: 'never',
          skipDownload: true,
          progressLogs: false,
          logLevel: nlc.LlamaLogLevel.warn,
          logger: (_level, message) => {
            llamaLog.push(message.trim());
            if (llamaLog.length > 50) llamaLog.shift();
          },
        });
      } catch (e) {
        throw new LeashError(
          'model_unavailable',
          `node-llama-cpp could not load a prebuilt llama.cpp binary for this platform: ${errorText(e)}`,
          { cause: e },
        );
      }
    })();
    llamaPromise = p;
    // A failed start may be retried by a later call.
    p.catch(() => {
      if (llamaPromise === p) llamaPromise = null;
    });
  }
  return llamaPromise;
}

/** The loaded model for an absolute path: loaded once, shared by every call (and by concurrent first calls). */
export function loadGgufModel(path: string, env: NodeJS.ProcessEnv = process.env): Promise<LlamaModel> {
  let p = models.get(path);
  if (!p) {
    const load = async (): Promise<LlamaModel> => {
      const llama = await getSharedLlama(env);
      assertModelFile(path);
      const logStart = llamaLog.length;
      stats.loads++;
      try {
        return await llama.loadModel({ modelPath: path });
      } catch (e) {
        // llama.cpp's log lines about the failure arrive just after the rejection.
        await new Promise((r) => setTimeout(r, 20));
        const why = llamaLog.slice(logStart).find((l) => /error|fail|invalid/i.test(l));
        throw new LeashError(
          'model_unavailable',
          `Cannot load GGUF model ${path}: ${errorText(e)}${why ? ` (${why})` : ''}`,
          { cause: e },
        );
      }
    };
    const loading = load();
    p = loading;
    models.set(path, loading);
    // A file that failed to load (missing, corrupt, too large) is tried again next time.
    loading.catch(() => {
      if (models.get(path) === loading) models.delete(path);
    });
  }
  return p;
}

/** Unloads every cached model (server shutdown, tests). Calls in flight keep their own contexts until they end. */
export async function unloadGgufModels(): Promise<void> {
  const all = [...models.values()];
  models.clear();
  await Promise.all(all.map((p) => p.then((m) => m.dispose()).catch(() => {})));
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message || e.name : String(e));

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

// ---- the prompt ----

export interface GgufPrompt {
  tokens: Token[];
  /** Tokens that end the answer besides the model's end-of-generation tokens. */
  stopTokens: Set<Token>;
  /** Texts that end the answer (not included in it), e.g. the next turn's header. */
  stopTexts: string[];
  /** How it was formatted: the chat wrapper's name (from the chat template), or `transcript`. */
  format: string;
}

/** `role: content` per message and an open `assistant:` turn. */
export function transcriptPrompt(messages: ChatMessage[]): string {
  return [...messages.map((m) => `${m.role}: ${m.content}`), 'assistant:'].join('\n');
}

export function buildPrompt(nlc: Nlc, model: LlamaModel, messages: ChatMessage[]): GgufPrompt {
  const template = model.fileInfo.metadata?.tokenizer?.chat_template;
  const wrapper =
    typeof template === 'string' && template.trim() !== ''
      ? nlc.resolveChatWrapper(model, { warningLogs: false })
      : null;
  if (wrapper) {
    const history: ChatHistoryItem[] = messages.map((m) =>
      m.role === 'assistant' ? { type: 'model', response: [m.content] } : { type: m.role, text: m.content },
    );
    history.push({ type: 'model', response: [] });
    const state = wrapper.generateContextState({ chatHistory: history });
    const stopTokens = new Set<Token>();
    const stopTexts: string[] = [];
    for (const trigger of state.stopGenerationTriggers) {
      if (trigger.values.some((v) => v instanceof nlc.SpecialToken)) {
        // EOS, EOT…: one token each.
        const t = trigger.tokenize(model.tokenizer);
        if (t.length === 1) stopTokens.add(t[0]!);
        continue;
      }
      const text = trigger.values.map((v) => (typeof v === 'string' ? v : v.value)).join('');
      if (text === '') continue;
      // `<|im_end|>` and the like are single special tokens, which detokenize to ''.
      const t = model.tokenize(text, true, 'trimLeadingSpace');
      if (t.length === 1) stopTokens.add(t[0]!);
      stopTexts.push(text);
    }
    return { tokens: state.contextText.tokenize(model.tokenizer), stopTokens, stopTexts, format: wrapper.wrapperName };
  }
  const tokens = model.tokenize(transcriptPrompt(messages), false);
  const bos = model.tokens.bos;
  if (bos !== null && model.tokens.shouldPrependBosToken) tokens.unshift(bos);
  return {
    tokens,
    stopTokens: new Set(),
    stopTexts: ['\nuser:', '\nsystem:', '\nassistant:'],
    format: 'transcript',
  };
}

/**
 * Tokens to text, one token at a time. A character split over several tokens (byte
 * tokens) decodes to U+FFFD until its last byte arrives, so such tokens wait, up to
 * MAX_PENDING_TOKENS. The tokens before give the detokenizer its spacing context.
 */
export class StreamDetokenizer {
  private pending: Token[] = [];
  private context: Token[];
  private readonly model: Pick<LlamaModel, 'detokenize'>;

  constructor(model: Pick<LlamaModel, 'detokenize'>, preceding: readonly Token[]) {
    this.model = model;
    this.context = preceding.slice(-8);
  }

  /** The text the token completes ('' while a character is incomplete). */
  push(token: Token): string {
    this.pending.push(token);
    const text = this.model.detokenize(this.pending, false, this.context);
    if (text.endsWith('\uFFFD') && this.pending.length < MAX_PENDING_TOKENS) return '';
    this.context = [...this.context, ...this.pending].slice(-8);
    this.pending = [];
    return text;
  }

  /** Whatever is still waiting, decoded as it is. */
  flush(): string {
    if (this.pending.length === 0) return '';
    const text = this.model.detokenize(this.pending, false, this.context);
    this.context = [...this.context, ...this.pending].slice(-8);
    this.pending = [];
    return text;
  }
}

/**
 * The answer text between the detokenizer and the stream: drops its leading whitespace,
 * holds back an end that may be the start of a stop text until the next text decides,
 * and cuts the answer at the first stop text (which is not sent).
 */
export class AnswerFilter {
  private held = '';
  private started = false;
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s !== '');
  }

  /** The text that can be sent now; `stop` once a stop text was reached. */
  push(text: string): { text: string; stop: boolean } {
    this.held += text;
    if (!this.started) {
      this.held = this.held.trimStart();
      this.started = this.held !== '';
    }
    let at = -1;
    for (const s of this.stops) {
      const i = this.held.indexOf(s);
      if (i !== -1 && (at === -1 || i < at)) at = i;
    }
    if (at !== -1) {
      const out = this.held.slice(0, at);
      this.held = '';
      return { text: out, stop: true };
    }
    const keep = this.partialStopLength();
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return { text: out, stop: false };
  }

  /** At the end of the answer: what was held back. */
  flush(): string {
    const out = this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest end of the held text that starts a stop text. */
  private partialStopLength(): number {
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.held.length); k > keep; k--) {
        if (this.held.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    return keep;
  }
}

// ---- the provider ----

export interface GgufProviderOptions {
  env?: NodeJS.ProcessEnv;
  /** Base for relative paths (default: process.cwd() at resolve time). */
  cwd?: string;
}

export function ggufProvider(options: GgufProviderOptions = {}): ModelProvider {
  const env = options.env ?? process.env;
  return {
    description: 'Local GGUF model run in-process with node-llama-cpp: gguf:<path>[?threads=&ctx=&temp=&seed=]',
    resolve(name, spec) {
      const parsed = parseGgufSpec(name, spec, options.cwd);
      // Fail at resolve time (task creation, server start) when the file is not there.
      assertModelFile(parsed.path);
      return createGgufModel(spec, parsed, env);
    },
  };
}

export function createGgufModel(id: string, spec: GgufSpec, env: NodeJS.ProcessEnv = process.env): Model {
  return { id, stream: (call) => ggufStream(spec, call, env) };
}

async function* ggufStream(
  spec: GgufSpec,
  call: ModelCallOptions,
  env: NodeJS.ProcessEnv,
): AsyncGenerator<ModelStreamPart> {
  const signal = call.abortSignal;
  signal?.throwIfAborted();
  const { path, options } = spec;
  assertModelFile(path);
  const nlc = await untilAborted(loadNlc(), signal);
  const model = await untilAborted(loadGgufModel(path, env), signal);
  signal?.throwIfAborted();

  stats.activeCalls++;
  let context: LlamaContext | undefined;
  try {
    try {
      context = await model.createContext({
        contextSize: options.ctx ?? Math.min(model.trainContextSize || MAX_DEFAULT_CTX, MAX_DEFAULT_CTX),
        sequences: 1,
        // node-llama-cpp's default is at least 4 threads, which on a 2-core machine spins
        // ~50x slower than 2; the math cores are what llama.cpp can use.
        threads: options.threads ?? Math.max(1, model.llama.cpuMathCores),
        createSignal: signal,
      });
    } catch (e) {
      signal?.throwIfAborted();
      throw new LeashError('model_unavailable', `Cannot create a context for GGUF model ${path}: ${errorText(e)}`, {
        cause: e,
      });
    }
    signal?.throwIfAborted();

    const prompt = buildPrompt(nlc, model, call.messages);
    const contextSize = context.contextSize;
    if (prompt.tokens.length === 0 || prompt.tokens.length >= contextSize) {
      throw new LeashError(
        'invalid_request',
        `The prompt is ${prompt.tokens.length} tokens; the context of GGUF model ${path} holds ${contextSize}`,
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
    throw new LeashError('upstream_error', `GGUF model ${path} failed: ${errorText(e)}`, { cause: e });
  } finally {
    stats.activeCalls--;
    await context?.dispose();
  }
}
