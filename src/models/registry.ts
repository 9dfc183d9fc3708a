// Resolves model specs to Models. `simulated…` is built in; every other spec is
// `<prefix>:<name>` and goes to the provider registered under that prefix
// (`openai`, `ollama`, `anthropic`, `gguf`), so real providers plug in without
// touching the tasks. Every name passes the allowlist (allowlist.ts) first: a name
// outside it is refused before any provider looks at it.

import { LeashError } from '../core/errors.ts';
import type { Model, ModelInfo, ModelProvider, ModelRegistry } from './model.ts';
import { SIMULATED_MODELS, createSimulatedModel, isSimulatedSpec, simulatedVariantOf } from './simulated.ts';
import { remoteProviders } from './providers.ts';
import { ggufProvider } from './gguf/provider.ts';
import type { GgufLimits } from './gguf/spec.ts';
import { DEFAULT_MODEL_PATTERNS, createModelAllowlist, parseModelPatterns } from './allowlist.ts';

export interface ModelRegistryOptions {
  /** Used when a caller names no model, e.g. `simulated` or `openai:gpt-4o-mini`. */
  defaultModel: string;
  /**
   * Keyed by prefix without the colon: `{ openai: …, ollama: … }`. Defaults to the
   * AI SDK providers (`openai`, `ollama`, `anthropic`) configured from `env`, and
   * `gguf` (local files via node-llama-cpp); pass `{}` for simulated models only.
   */
  providers?: Record<string, ModelProvider>;
  /** Environment read by the simulated model (LEASH_SIM_TPS) and the default providers; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * The names callers may use, `*` patterns (see allowlist.ts); the default model is
   * always allowed besides. Defaults to LEASH_MODELS from `env`, else `simulated*`.
   */
  allow?: readonly string[];
  /** Limits of the default `gguf` provider (models directory, context, threads, cache); defaults from `env`. */
  gguf?: Partial<GgufLimits>;
  /** Where details a caller must not see go (e.g. why a model file did not load). */
  logger?: { warn(obj: object, msg: string): void };
}

export function createModelRegistry(options: ModelRegistryOptions): ModelRegistry {
  const env = options.env ?? process.env;
  const allowlist = createModelAllowlist(
    options.allow ?? parseModelPatterns(env.LEASH_MODELS) ?? DEFAULT_MODEL_PATTERNS,
    options.defaultModel,
  );
  const providers = new Map(
    Object.entries(
      options.providers ?? {
        ...remoteProviders({ env }),
        gguf: ggufProvider({
          env,
          ...(options.gguf && { limits: options.gguf }),
          ...(options.logger && { logger: options.logger }),
        }),
      },
    ),
  );
  for (const prefix of providers.keys()) {
    if (!/^[a-z][a-z0-9_-]*$/.test(prefix) || prefix === 'simulated') {
      throw new TypeError(`Invalid model provider prefix "${prefix}"`);
    }
  }

  const known = (): string =>
    ['simulated', 'simulated:echo', ...[...providers.keys()].map((p) => `${p}:<model>`)].join(', ');
  const unknown = (spec: string): LeashError =>
    new LeashError('unknown_model', `Unknown model "${spec}". Known: ${known()}`);

  const resolve = (spec?: string): Model => {
    const s = spec ?? options.defaultModel;
    // First, before any provider code: a refused name costs no file look-up and no request.
    allowlist.check(s);
    if (isSimulatedSpec(s)) {
      // An unknown variant is answered with every known model; a bad option by the simulated model's own words.
      if (simulatedVariantOf(s) === undefined) throw unknown(s);
      return createSimulatedModel(s, env);
    }
    const colon = s.indexOf(':');
    const provider = colon > 0 ? providers.get(s.slice(0, colon)) : undefined;
    const name = colon > 0 ? s.slice(colon + 1) : '';
    if (!provider || name === '') throw unknown(s);
    return provider.resolve(name, s);
  };

  // Fail at startup, not on the first request, when the default is unusable.
  resolve(options.defaultModel);

  return {
    defaultModel: options.defaultModel,
    allowedModels: allowlist.patterns,
    resolve,
    check: (spec) => allowlist.check(spec ?? options.defaultModel),
    list(): ModelInfo[] {
      const prefixOf = (id: string): string => (isSimulatedSpec(id) ? 'simulated' : id.slice(0, id.indexOf(':')));
      const out: ModelInfo[] = [...SIMULATED_MODELS];
      for (const [prefix, p] of providers) {
        out.push(...(p.list?.() ?? []).filter((m) => m.id.startsWith(`${prefix}:`)));
      }
      // Exact names in the allowlist are models too (`openai:gpt-4o-mini`); patterns cannot be listed.
      for (const id of [options.defaultModel, ...allowlist.exact]) {
        if (out.some((m) => m.id === id)) continue;
        const prefix = prefixOf(id);
        if (prefix !== 'simulated' && !providers.has(prefix)) continue;
        out.push({
          id,
          provider: prefix,
          description: providers.get(prefix)?.description ?? 'The default model',
        });
      }
      return out.filter((m) => allowlist.allows(m.id));
    },
  };
}
