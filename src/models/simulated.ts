// The built-in `simulated` model: deterministic text at a fixed token rate, so the
// whole cancel path (signal → token loop) can be exercised without a network.
//
// Specs:
//   simulated | simulated:lorem   plausible words seeded by a hash of the last user message
//   simulated:echo                a transcript of the messages it was given, `[role] content` per line
// Options as a query string: `simulated?tps=200&tokens=500`, `simulated:echo?tps=1000`.
//   tps     tokens per second; default env LEASH_SIM_TPS or 50; 0 = no delay at all
//   tokens  answer length of `lorem` (default 60); `echo` always answers with the whole transcript
// The call's `maxTokens` caps both (finishReason `length`).
//
// Abort: like fetch and the AI SDK, the stream ends by *throwing the signal's reason*
// (leash's CancelledError and the default DOMException are both named `AbortError`).
// No finish part is sent after an abort; callers count the deltas they received.
// The pending token timer and the abort listener are removed at once, so an aborted
// stream leaves nothing behind on the event loop.

import { createHash } from 'node:crypto';
import { LeashError } from '../core/errors.ts';
import type { ChatMessage, Model, ModelCallOptions, ModelInfo, ModelStreamPart } from './model.ts';

export type SimulatedVariant = 'lorem' | 'echo';

export interface SimulatedOptions {
  variant: SimulatedVariant;
  /** Tokens per second; 0 means no delay. */
  tps: number;
  /** Length of a `lorem` answer in tokens. */
  tokens: number;
}

export const DEFAULT_SIM_TPS = 50;
export const DEFAULT_SIM_TOKENS = 60;
const MAX_SIM_TOKENS = 1_000_000;
const MAX_SIM_TPS = 1_000_000;
/** With tps=0 the loop still yields to the event loop this often, so a cancel can get in. */
const YIELD_EVERY = 256;

export const SIMULATED_MODELS: ModelInfo[] = [
  {
    id: 'simulated',
    provider: 'simulated',
    description: 'Deterministic placeholder text (no network); options ?tps=&tokens=',
  },
  {
    id: 'simulated:echo',
    provider: 'simulated',
    description: 'Answers with a transcript of the messages it was given',
  },
];

export const isSimulatedSpec = (spec: string): boolean => /^simulated(?:$|[:?])/.test(spec);

/** The default token rate: env `LEASH_SIM_TPS` when it is a valid number, else 50. */
export function defaultSimTps(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.LEASH_SIM_TPS;
  if (raw === undefined || raw.trim() === '') return DEFAULT_SIM_TPS;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 && n <= MAX_SIM_TPS ? n : DEFAULT_SIM_TPS;
}

/** The variant a spec names (`simulated`, `simulated:lorem`, `simulated:echo`, options aside); undefined for any other name. */
export function simulatedVariantOf(spec: string): SimulatedVariant | undefined {
  const q = spec.indexOf('?');
  const name = q === -1 ? spec : spec.slice(0, q);
  if (name === 'simulated' || name === 'simulated:lorem') return 'lorem';
  if (name === 'simulated:echo') return 'echo';
  return undefined;
}

/** Parses `simulated[:variant][?tps=&tokens=]`; throws `unknown_model` for anything else. */
export function parseSimulatedSpec(spec: string, env: NodeJS.ProcessEnv = process.env): SimulatedOptions {
  const q = spec.indexOf('?');
  const query = q === -1 ? '' : spec.slice(q + 1);
  const variant = simulatedVariantOf(spec);
  if (variant === undefined) {
    throw new LeashError('unknown_model', `Unknown model "${spec}". Known simulated models: simulated, simulated:echo`);
  }

  const opts: SimulatedOptions = { variant, tps: defaultSimTps(env), tokens: DEFAULT_SIM_TOKENS };
  for (const [key, value] of new URLSearchParams(query)) {
    const n = value.trim() === '' ? NaN : Number(value);
    if (key === 'tps') {
      if (!(Number.isFinite(n) && n >= 0 && n <= MAX_SIM_TPS)) {
        throw new LeashError('unknown_model', `Invalid model "${spec}": tps must be a number from 0 to ${MAX_SIM_TPS}`);
      }
      opts.tps = n;
    } else if (key === 'tokens') {
      if (!(Number.isInteger(n) && n >= 0 && n <= MAX_SIM_TOKENS)) {
        throw new LeashError(
          'unknown_model',
          `Invalid model "${spec}": tokens must be an integer from 0 to ${MAX_SIM_TOKENS}`,
        );
      }
      opts.tokens = n;
    } else {
      throw new LeashError('unknown_model', `Invalid model "${spec}": unknown option "${key}" (known: tps, tokens)`);
    }
  }
  return opts;
}

export function createSimulatedModel(spec: string, env: NodeJS.ProcessEnv = process.env): Model {
  const opts = parseSimulatedSpec(spec, env);
  return {
    id: spec,
    stream: (call) => simulatedStream(opts, call),
  };
}

/** `[role] content` per message, content verbatim, joined by newlines (no trailing newline). */
export function echoTranscript(messages: ChatMessage[]): string {
  return messages.map((m) => `[${m.role}] ${m.content}`).join('\n');
}

/** Words in all messages: the simulated model's input token count. */
export function countWords(messages: ChatMessage[]): number {
  let n = 0;
  for (const m of messages) n += m.content.match(/\S+/g)?.length ?? 0;
  return n;
}

/** Splits text into word tokens that keep their trailing whitespace, so the tokens concatenate to the text exactly. */
export function splitTokens(text: string): string[] {
  return text.split(/(?<=\s)(?=\S)/).filter((t) => t !== '');
}

async function* simulatedStream(opts: SimulatedOptions, call: ModelCallOptions): AsyncGenerator<ModelStreamPart> {
  const signal = call.abortSignal;
  signal?.throwIfAborted();
  const all =
    opts.variant === 'echo' ? splitTokens(echoTranscript(call.messages)) : loremTokens(call.messages, opts.tokens);
  const cap = call.maxTokens !== undefined && call.maxTokens >= 0 ? Math.floor(call.maxTokens) : Infinity;
  const tokens = all.length > cap ? all.slice(0, cap) : all;
  const usage = { input_tokens: countWords(call.messages), output_tokens: 0 };

  // Each token is due at start + (i+1)/tps, measured from one start time, so timer
  // lateness does not accumulate into drift.
  const interval = opts.tps > 0 ? 1000 / opts.tps : 0;
  const start = performance.now();
  for (let i = 0; i < tokens.length; i++) {
    if (interval > 0) await waitUntil(start + (i + 1) * interval, signal);
    else if (i > 0 && i % YIELD_EVERY === 0) await waitUntil(-1, signal);
    signal?.throwIfAborted();
    usage.output_tokens++;
    yield { type: 'text-delta', text: tokens[i]! };
  }
  signal?.throwIfAborted();
  yield { type: 'finish', finishReason: tokens.length < all.length ? 'length' : 'stop', usage };
}

/**
 * Resolves once `performance.now()` reaches `at` (a negative `at` means: on the next
 * macrotask), or rejects with the signal's reason the moment it aborts. The timer and
 * the listener are always removed.
 */
function waitUntil(at: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const done = (): void => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, at - performance.now()));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// ---- lorem: a deterministic, plausible-looking answer ----

const WORDS = (
  'the a model task result answer data system process value signal stream token request response ' +
  'analysis document section summary context input output error state change time step part detail ' +
  'approach method example question reason case point level rate limit cost risk plan goal user client ' +
  'server network queue worker thread message event record note idea view method pattern structure ' +
  'is are was can will should may must does shows means needs makes keeps gives takes runs stops ' +
  'starts returns reports follows suggests indicates requires handles explains describes ' +
  'clear simple important careful useful direct current final first next main key small large ' +
  'early late stable reliable consistent relevant specific general overall likely ' +
  'and or but so because while when if then also still only often usually clearly mostly ' +
  'of in on for with by from to at about into over under after before between through'
).split(' ');

/** The first 32 bits of the text's SHA-256: a stable seed for any text. */
function seedOf(text: string): number {
  const digest = createHash('sha256').update(text).digest();
  return digest.readUInt32LE(0);
}

/** mulberry32: a tiny deterministic PRNG (also seeds the test model's random weights). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` tokens (word + trailing space) seeded by the last user message, in sentences. */
export function loremTokens(messages: ChatMessage[], count: number): string[] {
  const lastUser = [...messages].reverse().find((m) => m.role === 'user')?.content ?? '';
  const rand = prng(seedOf(lastUser));
  const out: string[] = [];
  let sentenceLeft = 0;
  for (let i = 0; i < count; i++) {
    let word = WORDS[Math.floor(rand() * WORDS.length)]!;
    if (sentenceLeft === 0) {
      sentenceLeft = 6 + Math.floor(rand() * 10);
      word = word[0]!.toUpperCase() + word.slice(1);
    }
    sentenceLeft--;
    const last = i === count - 1;
    if (sentenceLeft === 0 || last) word += '.';
    else if (rand() < 0.08) word += ',';
    out.push(word + ' ');
  }
  return out;
}
