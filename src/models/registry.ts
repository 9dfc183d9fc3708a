// Resolves model specs to Models. `simulated…` is built in; every other spec is
// `<prefix>:<name>` and goes to the provider registered under that prefix
// (`openai`, `ollama`, `anthropic`, `gguf`), so real providers plug in without
// touching the tasks.

import { LeashError } from '../runtime/errors.ts';
import type { Model, ModelInfo, ModelRegistry } from './model.ts';
import { SIMULATED_MODELS, createSimulatedModel, isSimulatedSpec } from './simulated.ts';
import { remoteProviders } from './providers.ts';
import { ggufProvider } from './gguf.ts';

export interface ModelProvider {
  /** One line for `list()` and error messages, e.g. `OpenAI-compatible API at https://…`. */
  readonly description?: string;
  /** `name` is the spec without `<prefix>:`; `spec` the whole spec (the Model's id). */
  resolve(name: string, spec: string): Model;
  /** Models this provider knows it can serve (optional; providers may accept any name). */
  list?(): ModelInfo[];
}

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
}

export function createModelRegistry(options: ModelRegistryOptions): ModelRegistry {
  const env = options.env ?? process.env;
  const providers = new Map(
    Object.entries(options.providers ?? { ...remoteProviders({ env }), gguf: ggufProvider({ env }) }),
  );
  for (const prefix of providers.keys()) {
    if (!/^[a-z][a-z0-9_-]*$/.test(prefix) || prefix === 'simulated') {
      throw new TypeError(`Invalid model provider prefix "${prefix}"`);
    }
  }

  const known = (): string =>
    ['simulated', 'simulated:echo', ...[...providers.keys()].map((p) => `${p}:<model>`)].join(', ');

  const resolve = (spec?: string): Model => {
    const s = spec ?? options.defaultModel;
    if (isSimulatedSpec(s)) {
      try {
        return createSimulatedModel(s, env);
      } catch (e) {
        // Keep parse errors about options; replace "unknown simulated variant" with the full list.
        if (LeashError.is(e) && e.message.startsWith('Unknown model')) {
          throw new LeashError('unknown_model', `Unknown model "${s}". Known: ${known()}`);
        }
        throw e;
      }
    }
    const colon = s.indexOf(':');
    const provider = colon > 0 ? providers.get(s.slice(0, colon)) : undefined;
    const name = colon > 0 ? s.slice(colon + 1) : '';
    if (!provider || name === '') {
      throw new LeashError('unknown_model', `Unknown model "${s}". Known: ${known()}`);
    }
    return provider.resolve(name, s);
  };

  // Fail at startup, not on the first request, when the default is unusable.
  resolve(options.defaultModel);

  return {
    defaultModel: options.defaultModel,
    resolve,
    list(): ModelInfo[] {
      const out: ModelInfo[] = [...SIMULATED_MODELS];
      for (const [prefix, p] of providers) {
        out.push(...(p.list?.() ?? []).filter((m) => m.id.startsWith(`${prefix}:`)));
      }
      if (!out.some((m) => m.id === options.defaultModel)) {
        const colon = options.defaultModel.indexOf(':');
        const prefix = isSimulatedSpec(options.defaultModel) ? 'simulated' : options.defaultModel.slice(0, colon);
        out.push({
          id: options.defaultModel,
          provider: prefix,
          description: providers.get(prefix)?.description ?? 'The default model',
        });
      }
      return out;
    },
  };
}
