// The remote model providers, configured from the environment:
//   openai:<model>     OPENAI_BASE_URL (default https://api.openai.com/v1), OPENAI_API_KEY
//                      (any OpenAI-compatible server: OpenAI, vLLM, llama.cpp server, Ollama's /v1)
//   ollama:<model>     OLLAMA_HOST (default http://127.0.0.1:11434), via its /v1 OpenAI-compatible API
//   anthropic:<model>  ANTHROPIC_API_KEY (ANTHROPIC_BASE_URL optional)
// The OpenAI-compatible ones stream through openai-compatible.ts, anthropic through
// the AI SDK (ai-sdk.ts).

import type { LanguageModel } from 'ai';
import { LeashError } from '../core/errors.ts';
import { createAiSdkModel } from './ai-sdk.ts';
import { createOpenAiCompatibleModel } from './openai-compatible.ts';
import type { ModelProvider } from './model.ts';

export interface RemoteProvidersOptions {
  env?: NodeJS.ProcessEnv;
  /** Retries before the first token (default 2). */
  maxRetries?: number;
}

const trimSlash = (u: string): string => u.replace(/\/+$/, '');

/**
 * Upstream model names have no `?parameters`: one with a `?` is refused here, before
 * anything goes upstream, so an allowlist pattern like `openai:gpt-4o-mini` (matched on
 * the name before `?`, see allowlist.ts) cannot be stretched into another upstream name.
 */
function plainName(name: string, spec: string): string {
  if (name.includes('?')) {
    throw new LeashError('unknown_model', `Invalid model "${spec}": this provider's model names take no ?parameters`);
  }
  return name;
}

/** `OLLAMA_HOST` as Ollama accepts it (`host`, `host:port`, `0.0.0.0`, with or without scheme) → a base URL. */
export function ollamaOrigin(host: string | undefined): string {
  const raw = (host ?? '').trim() || '127.0.0.1:11434';
  const hasScheme = /^https?:\/\//i.test(raw);
  const url = new URL(hasScheme ? raw : `http://${raw}`);
  if (url.hostname === '0.0.0.0') url.hostname = '127.0.0.1';
  // Without a scheme Ollama means its own port; with one, the scheme's default.
  if (!hasScheme && url.port === '') url.port = '11434';
  return trimSlash(url.origin + url.pathname);
}

/** The `openai`, `ollama` and `anthropic` providers for the model registry. */
export function remoteProviders(options: RemoteProvidersOptions = {}): Record<string, ModelProvider> {
  const env = options.env ?? process.env;
  const maxRetries = options.maxRetries;

  const openaiBase = trimSlash(env.OPENAI_BASE_URL?.trim() || 'https://api.openai.com/v1');
  const openaiKey = env.OPENAI_API_KEY?.trim() || undefined;
  const ollamaBase = `${ollamaOrigin(env.OLLAMA_HOST)}/v1`;
  const anthropicBase = trimSlash(env.ANTHROPIC_BASE_URL?.trim() || 'https://api.anthropic.com/v1');
  const anthropicKey = env.ANTHROPIC_API_KEY?.trim() || undefined;

  return {
    openai: {
      description: `OpenAI-compatible API at ${openaiBase}`,
      resolve(name, spec) {
        plainName(name, spec);
        // A custom base URL may be a keyless local server (vLLM, llama.cpp); api.openai.com never is.
        if (!openaiKey && !env.OPENAI_BASE_URL?.trim()) {
          throw new LeashError(
            'model_unavailable',
            `Model "${spec}" needs OPENAI_API_KEY (or OPENAI_BASE_URL for a keyless server), which is not set`,
          );
        }
        return createOpenAiCompatibleModel({
          id: spec,
          provider: 'openai',
          baseURL: openaiBase,
          model: name,
          ...(openaiKey !== undefined && { apiKey: openaiKey }),
          ...(maxRetries !== undefined && { maxRetries }),
        });
      },
    },
    ollama: {
      description: `Ollama at ${ollamaBase}`,
      resolve(name, spec) {
        plainName(name, spec);
        return createOpenAiCompatibleModel({
          id: spec,
          provider: 'ollama',
          baseURL: ollamaBase,
          model: name,
          ...(maxRetries !== undefined && { maxRetries }),
        });
      },
    },
    anthropic: {
      description: `Anthropic API at ${anthropicBase}`,
      resolve(name, spec) {
        plainName(name, spec);
        if (!anthropicKey) {
          throw new LeashError('model_unavailable', `Model "${spec}" needs ANTHROPIC_API_KEY, which is not set`);
        }
        const create = async (): Promise<LanguageModel> => {
          const { createAnthropic } = await import('@ai-sdk/anthropic');
          return createAnthropic({ apiKey: anthropicKey, baseURL: anthropicBase })(name);
        };
        return createAiSdkModel({ id: spec, provider: 'anthropic', endpoint: anthropicBase, create, maxRetries });
      },
    },
  };
}
