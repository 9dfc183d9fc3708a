// Which model names callers may use (LEASH_MODELS). Decided on the name alone, before
// any provider sees it: no file is looked at and no request goes upstream for a name
// outside the list.
//
// A pattern is matched against the whole name up to its first `?` (the parameters):
// `*` stands for any run of characters (`:` and `/` included), everything else is
// literal and case-sensitive. So `simulated*` allows `simulated?tps=5` and
// `simulated:echo`, and `gguf:qwen.gguf` allows `gguf:qwen.gguf?temp=0.2`. Parameters
// are then up to the provider: the simulated model's are harmless, gguf's are capped
// by the operator (LEASH_GGUF_*), and the remote providers refuse any `?` in a name,
// so no pattern can be stretched into sending an arbitrary name upstream.

import { LeashError } from '../core/errors.ts';

/** Used when LEASH_MODELS is unset; the default model is always allowed besides. */
export const DEFAULT_MODEL_PATTERNS: readonly string[] = ['simulated*'];

/** `a, b*,,c` → `['a', 'b*', 'c']`; undefined for an unset or blank value. */
export function parseModelPatterns(raw: string | undefined): string[] | undefined {
  const list = (raw ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  return list.length === 0 ? undefined : list;
}

/** The part of a spec the allowlist judges: everything before the first `?`. */
export const specBase = (spec: string): string => {
  const q = spec.indexOf('?');
  return q === -1 ? spec : spec.slice(0, q);
};

const patternRegExp = (pattern: string): RegExp =>
  new RegExp(
    `^${pattern
      .split('*')
      .map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&'))
      .join('.*')}$`,
    's',
  );

export interface ModelAllowlist {
  readonly patterns: readonly string[];
  allows(spec: string): boolean;
  /** Throws 400 `model_not_allowed` unless `spec` is allowed. Pure: no I/O. */
  check(spec: string): void;
  /** Patterns without `*` (exact names), for listing. */
  readonly exact: readonly string[];
}

export function createModelAllowlist(patterns: readonly string[], defaultModel: string): ModelAllowlist {
  const all = [...new Set([specBase(defaultModel), ...patterns.map(specBase)])];
  const res = all.map(patternRegExp);
  const allows = (spec: string): boolean => {
    const base = specBase(spec);
    return res.some((re) => re.test(base));
  };
  return {
    patterns: all,
    exact: all.filter((p) => !p.includes('*')),
    allows,
    check(spec) {
      if (!allows(spec)) {
        // The name is the caller's own input; the list is not shown (it is the operator's).
        throw new LeashError(
          'model_not_allowed',
          `Model "${spec.length > 200 ? `${spec.slice(0, 200)}…` : spec}" is not allowed on this server (the operator's LEASH_MODELS).`,
        );
      }
    },
  };
}
