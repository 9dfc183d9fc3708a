// `gguf:<file>[?threads=&ctx=&temp=&seed=]`: the spec a request names, read within the
// limits the operator set (LEASH_MODELS_DIR, LEASH_GGUF_*). The options:
//     threads  CPU threads per call (default and most: LEASH_GGUF_THREADS, else the CPU's math cores)
//     ctx      context size in tokens (default: the model's training context; most: LEASH_GGUF_MAX_CONTEXT, 4096)
//     temp     default temperature when the call gives none (default 0.8; 0 = greedy)
//     seed     sampling seed, for repeatable output at temp > 0 (default: random)

import { availableParallelism } from 'node:os';
import { LeashError } from '../../core/errors.ts';

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
