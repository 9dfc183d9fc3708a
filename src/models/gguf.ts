// `gguf:<name>`: a local GGUF model run in-process with node-llama-cpp (llama.cpp).
//
//   gguf:qwen.gguf?threads=4&ctx=2048&temp=0.7&seed=1
//     threads  CPU threads per call (default and most: LEASH_GGUF_THREADS, else the CPU's math cores)
//     ctx      context size in tokens (default: the model's training context; most: LEASH_GGUF_MAX_CONTEXT, 4096)
//     temp     default temperature when the call gives none (default 0.8; 0 = greedy)
//     seed     sampling seed, for repeatable output at temp > 0 (default: random)
// `<name>` is a file in the operator's directory LEASH_MODELS_DIR (subdirectories
// allowed); without it gguf models are off. A name that is absolute, has an empty,
// `.` or `..` segment, leads (through a symlink) out of the directory, is missing, or is not a
// GGUF file gets one answer, the same for all, that echoes no path and no file bytes:
// a caller learns nothing about the disk. Why a file in the directory failed to load
// goes to the server log only. LEASH_GGUF_GPU picks a GPU backend (`auto`, `cuda`,
// `vulkan`, `metal`); the default is CPU only.
//
// node-llama-cpp uses the prebuilt binaries from its @node-llama-cpp/* npm packages
// (`build: 'never'`, `skipDownload: true`): nothing is built or downloaded at run time.
// It is imported on the first call, so servers that never use `gguf:` never load it.
//
// Each model file is loaded once per process (lazily; concurrent first calls share the
// load) and is unloaded after LEASH_GGUF_IDLE_MS without a call. At most
// LEASH_GGUF_MAX_LOADED files are loaded at once: a new one evicts the least recently
// used idle one, and when every loaded model is in a call the new call fails at once
// with 503 `models_busy` (no queue: memory is what the bound protects, and a waiting
// call would hold its task slot with no end in sight). Each call gets its own context,
// disposed when the call ends. The prompt is the model's chat template when the file
// has one (node-llama-cpp's chat wrappers render it), else a plain `role: content`
// transcript.
//
// Cancel: the token loop checks the abort signal before and after every token and
// between prompt batches, so generation stops between tokens (a token being computed
// finishes first). As with the other providers, an aborted stream ends by throwing the
// signal's reason, with no finish part. Usage counts the prompt's tokens as input and
// every sampled token (the end-of-generation one included) as output.

import { closeSync, constants, fstatSync, openSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve as resolvePath, sep } from 'node:path';
import type { ChatHistoryItem, Llama, LlamaContext, LlamaModel, Token } from 'node-llama-cpp';
import { LeashError } from '../core/errors.ts';
import type { ChatMessage, Model, ModelCallOptions, ModelInfo, ModelStreamPart } from './model.ts';
import type { ModelProvider } from './registry.ts';

type Nlc = typeof import('node-llama-cpp');

export interface GgufOptions {
  threads?: number;
  ctx?: number;
  temp?: number;
  seed?: number;
}

export interface GgufSpec {
  /** Real (absolute, symlink-free) path of the model file. */
  path: string;
  options: GgufOptions;
}

/** What the operator decides; a request may ask for less, never more. */
export interface GgufLimits {
  /** LEASH_MODELS_DIR: the only place `gguf:<name>` is looked up; unset = gguf models are off. */
  modelsDir: string | undefined;
  /** LEASH_GGUF_MAX_CONTEXT: largest context a call gets (tokens). */
  maxContext: number;
  /** LEASH_GGUF_THREADS: threads per call and the most a request may ask (unset: the CPU's math cores). */
  threads: number | undefined;
  /** LEASH_GGUF_IDLE_MS: a loaded model no call used for this long is unloaded. */
  idleMs: number;
  /** LEASH_GGUF_MAX_LOADED: models loaded at once. */
  maxLoaded: number;
}

export const GGUF_DEFAULT_LIMITS: Readonly<GgufLimits> = {
  modelsDir: undefined,
  maxContext: 4096,
  threads: undefined,
  idleMs: 10 * 60_000,
  maxLoaded: 2,
};

/** The limits from LEASH_MODELS_DIR and LEASH_GGUF_*; a malformed value throws a TypeError naming it. */
export function ggufLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): GgufLimits {
  const int = <T extends number | undefined>(name: string, min: number, max: number, fallback: T): number | T => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const n = /^\d{1,12}$/.test(raw) ? Number(raw) : NaN;
    if (!(n >= min && n <= max))
      throw new TypeError(`Invalid ${name}="${raw}": expected an integer from ${min} to ${max}.`);
    return n;
  };
  return {
    modelsDir: env.LEASH_MODELS_DIR?.trim() || undefined,
    maxContext: int('LEASH_GGUF_MAX_CONTEXT', 16, 1 << 20, GGUF_DEFAULT_LIMITS.maxContext),
    threads: int('LEASH_GGUF_THREADS', 1, 1024, undefined),
    idleMs: int('LEASH_GGUF_IDLE_MS', 0, 7 * 24 * 3_600_000, GGUF_DEFAULT_LIMITS.idleMs),
    maxLoaded: int('LEASH_GGUF_MAX_LOADED', 1, 64, GGUF_DEFAULT_LIMITS.maxLoaded),
  };
}

const DEFAULT_TEMPERATURE = 0.8;
/** Tokens decoded together at most while waiting for the rest of a UTF-8 character. */
const MAX_PENDING_TOKENS = 4;

type Rule = { min: number; max: number; integer: boolean };
const optionRules = (limits: GgufLimits): Record<keyof GgufOptions, Rule> => ({
  threads: { min: 1, max: limits.threads ?? availableParallelism(), integer: true },
  ctx: { min: 16, max: limits.maxContext, integer: true },
  temp: { min: 0, max: 2, integer: false },
  seed: { min: 0, max: 2 ** 32 - 1, integer: true },
});

/** Parses `<name>[?threads=&ctx=&temp=&seed=]` (the spec without `gguf:`) within the operator's limits. */
export function parseGgufSpec(
  name: string,
  spec: string,
  limits: GgufLimits = GGUF_DEFAULT_LIMITS,
): { file: string; options: GgufOptions } {
  const q = name.indexOf('?');
  const file = q === -1 ? name : name.slice(0, q);
  if (file.trim() === '') throw new LeashError('unknown_model', `Invalid model "${spec}": no GGUF file name`);
  const rules = optionRules(limits);
  const options: GgufOptions = {};
  for (const [key, value] of new URLSearchParams(q === -1 ? '' : name.slice(q + 1))) {
    const rule = rules[key as keyof GgufOptions] as Rule | undefined;
    if (!rule) {
      throw new LeashError(
        'unknown_model',
        `Invalid model "${spec}": unknown option "${key}" (known: ${Object.keys(rules).join(', ')})`,
      );
    }
    const n = value.trim() === '' ? NaN : Number(value);
    if (!(Number.isFinite(n) && n >= rule.min && n <= rule.max && (!rule.integer || Number.isInteger(n)))) {
      throw new LeashError(
        'unknown_model',
        `Invalid model "${spec}": ${key} must be ${rule.integer ? 'an integer' : 'a number'} from ${rule.min} to ${rule.max} on this server`,
      );
    }
    options[key as keyof GgufOptions] = n;
  }
  return { file, options };
}

/**
 * The one answer for every name that is not a GGUF file inside the models directory:
 * the same code and words whether the name escapes, is missing or holds other bytes.
 */
export const notLoadable = (cause?: unknown): LeashError =>
  new LeashError(
    'model_unavailable',
    "Not a loadable model: there is no GGUF model by that name in this server's models directory.",
    cause === undefined ? {} : { cause },
  );

const ggufOff = (): LeashError =>
  new LeashError(
    'model_unavailable',
    'gguf models are off on this server: the operator sets LEASH_MODELS_DIR to the directory of .gguf files to serve.',
  );

/** Throws unless `path` is a regular file that starts with the GGUF magic. */
function assertGgufFile(path: string): void {
  // Not a FIFO or device (opening one could block or never end), then four bytes.
  if (!statSync(path).isFile()) throw new Error('not a regular file');
  const fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    if (!fstatSync(fd).isFile()) throw new Error('not a regular file');
    const magic = Buffer.alloc(4);
    if (readSync(fd, magic, 0, 4, 0) !== 4 || magic.toString('latin1') !== 'GGUF') throw new Error('no GGUF magic');
  } finally {
    closeSync(fd);
  }
}

const isInside = (root: string, path: string): boolean => path.startsWith(root.endsWith(sep) ? root : root + sep);

/**
 * `file` (a name from a request) → the real path of a GGUF file inside `dir`, or the
 * one `notLoadable` answer. Absolute names, empty, `.` and `..` segments, NUL and
 * backslashes are refused before the disk is touched; the rest by realpath + prefix check (symlinks
 * out of the directory included) and the file's magic.
 */
export function locateModelFile(dir: string | undefined, file: string): string {
  if (dir === undefined) throw ggufOff();
  if (
    file === '' ||
    isAbsolute(file) ||
    /[\0\\]/.test(file) ||
    // One spelling per model: no empty, `.` or `..` segments (`a//b`, `./a`, `a/`).
    file.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')
  ) {
    throw notLoadable();
  }
  try {
    const root = realpathSync(dir);
    const real = realpathSync(resolvePath(root, file));
    if (!isInside(root, real)) throw new Error('outside the models directory');
    assertGgufFile(real);
    return real;
  } catch (e) {
    throw notLoadable(e);
  }
}

/** The `.gguf` files at the top of the models directory, as `gguf:<name>` (for GET /v1/models). */
function listModelFiles(dir: string | undefined): string[] {
  if (dir === undefined) return [];
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => (d.isFile() || d.isSymbolicLink()) && d.name.endsWith('.gguf'))
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}

// ---- process-wide llama.cpp state (native resources: one per process) ----

interface LoadedModel {
  readonly path: string;
  readonly model: Promise<LlamaModel>;
  /** Calls holding it (a load in progress counts): only a model with none may be unloaded. */
  users: number;
  lastUsed: number;
  idleTimer: NodeJS.Timeout | null;
}

let nlcPromise: Promise<Nlc> | null = null;
let llamaPromise: Promise<Llama> | null = null;
const models = new Map<string, LoadedModel>();
/** Recent llama.cpp log lines: its load errors say why, the JS error only "Failed to load model". */
const llamaLog: string[] = [];
const stats = { loads: 0, unloads: 0, activeCalls: 0, generatedTokens: 0 };

/** Counters for tests and metrics: loads started, unloads (idle or evicted), models loaded now, calls holding a context, tokens sampled. */
export function ggufStats(): {
  loads: number;
  unloads: number;
  loadedModels: number;
  activeCalls: number;
  generatedTokens: number;
} {
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

function unload(entry: LoadedModel): void {
  if (entry.idleTimer) clearTimeout(entry.idleTimer);
  entry.idleTimer = null;
  if (models.get(entry.path) !== entry) return;
  models.delete(entry.path);
  stats.unloads++;
  void entry.model.then((m) => m.dispose()).catch(() => {});
}

/** Unloads least recently used idle models until one more fits; every one busy → 503 `models_busy`. */
function makeRoom(maxLoaded: number): void {
  while (models.size >= maxLoaded) {
    let lru: LoadedModel | null = null;
    for (const e of models.values()) if (e.users === 0 && (!lru || e.lastUsed < lru.lastUsed)) lru = e;
    if (!lru) {
      throw new LeashError(
        'models_busy',
        `All ${maxLoaded} GGUF models this server keeps loaded are in use (LEASH_GGUF_MAX_LOADED); try again when a call ends.`,
      );
    }
    unload(lru);
  }
}

/** Why a file in the models directory failed to load: for the server log, never for the caller. */
export type GgufLoadFailure = (detail: { err: unknown; path: string; llamaLog?: string }, msg: string) => void;

/**
 * Holds the model at `path` (loaded once, shared by every call and concurrent first
 * calls) until `release()`; the last release starts its idle timer.
 */
export function acquireGgufModel(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
  limits: GgufLimits = GGUF_DEFAULT_LIMITS,
  onLoadFailure?: GgufLoadFailure,
): { model: Promise<LlamaModel>; release(): void } {
  let entry = models.get(path);
  if (!entry) {
    makeRoom(limits.maxLoaded);
    const load = async (): Promise<LlamaModel> => {
      const llama = await getSharedLlama(env);
      const logStart = llamaLog.length;
      stats.loads++;
      try {
        return await llama.loadModel({ modelPath: path });
      } catch (e) {
        // llama.cpp's log lines about the failure arrive just after the rejection.
        await new Promise((r) => setTimeout(r, 20));
        const why = llamaLog.slice(logStart).find((l) => /error|fail|invalid/i.test(l));
        onLoadFailure?.({ err: e, path, ...(why !== undefined && { llamaLog: why }) }, 'GGUF model failed to load');
        throw notLoadable(new Error(`${errorText(e)}${why ? ` (${why})` : ''}`, { cause: e }));
      }
    };
    const created: LoadedModel = { path, model: load(), users: 0, lastUsed: Date.now(), idleTimer: null };
    entry = created;
    models.set(path, created);
    // A file that failed to load (corrupt, too large) is tried again next time.
    created.model.catch(() => {
      if (models.get(path) === created) models.delete(path);
    });
  }
  const held = entry;
  held.users++;
  if (held.idleTimer) clearTimeout(held.idleTimer);
  held.idleTimer = null;
  let released = false;
  return {
    model: held.model,
    release() {
      if (released) return;
      released = true;
      held.users--;
      held.lastUsed = Date.now();
      if (held.users === 0 && models.get(path) === held) {
        held.idleTimer = setTimeout(() => {
          if (held.users === 0) unload(held);
        }, limits.idleMs);
        held.idleTimer.unref();
      }
    },
  };
}

/** The loaded model for a real path, held only while it loads (tests, warm-up). */
export async function loadGgufModel(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
  limits: GgufLimits = GGUF_DEFAULT_LIMITS,
): Promise<LlamaModel> {
  const lease = acquireGgufModel(path, env, limits);
  try {
    return await lease.model;
  } finally {
    lease.release();
  }
}

/** Unloads every cached model (server shutdown, tests). Calls in flight keep their own contexts until they end. */
export async function unloadGgufModels(): Promise<void> {
  const all = [...models.values()];
  for (const e of all) if (e.idleTimer) clearTimeout(e.idleTimer);
  models.clear();
  await Promise.all(all.map((e) => e.model.then((m) => m.dispose()).catch(() => {})));
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
  /** Overrides of the limits read from `env` (ggufLimitsFromEnv). */
  limits?: Partial<GgufLimits>;
  /** Gets why a model file failed to load (the caller is only told it is not loadable). */
  logger?: { warn(obj: object, msg: string): void };
}

export function ggufProvider(options: GgufProviderOptions = {}): ModelProvider {
  const env = options.env ?? process.env;
  const limits: GgufLimits = { ...ggufLimitsFromEnv(env), ...options.limits };
  const onLoadFailure: GgufLoadFailure | undefined = options.logger
    ? (detail, msg) => options.logger!.warn(detail, msg)
    : undefined;
  return {
    description:
      'Local GGUF model from LEASH_MODELS_DIR, run in-process with node-llama-cpp: gguf:<file>[?threads=&ctx=&temp=&seed=]',
    resolve(name, spec) {
      if (limits.modelsDir === undefined) throw ggufOff();
      const { file, options: opts } = parseGgufSpec(name, spec, limits);
      // Fail at resolve time (task creation, server start) when the name is no model here.
      const path = locateModelFile(limits.modelsDir, file);
      return createGgufModel(spec, { path, options: opts }, env, limits, onLoadFailure);
    },
    list(): ModelInfo[] {
      return listModelFiles(limits.modelsDir).map((f) => ({
        id: `gguf:${f}`,
        provider: 'gguf',
        description: 'Local GGUF model (LEASH_MODELS_DIR)',
      }));
    },
  };
}

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
