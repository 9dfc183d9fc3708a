// The model `leash serve` uses when LEASH_MODEL / --model is unset: a real one when
// there is one to be had, so a first run shows real answers. An Ollama server that
// answers at OLLAMA_HOST (default 127.0.0.1:11434) with at least one model gives
// `ollama:<its first model>`; otherwise the built-in `simulated` model, and the
// start line says plainly that answers are simulated and how to get real ones.

import { ollamaOrigin } from '../models/providers.ts';

export interface DefaultModelChoice {
  model: string;
  /** One line for the operator, printed at start. */
  note: string;
}

export const SIMULATED_NOTE =
  'answers are simulated (the built-in `simulated` model). For real ones: run Ollama (OLLAMA_HOST), ' +
  'or set LEASH_MODEL=openai:<model> with OPENAI_API_KEY (LEASH_MODEL=ollama:<model>, anthropic:<model> also work).';

/** Asks Ollama for its models, giving up after `timeoutMs`; never throws. */
export async function detectDefaultModel(
  env: NodeJS.ProcessEnv,
  timeoutMs = 800,
  fetchImpl: typeof fetch = fetch,
): Promise<DefaultModelChoice> {
  let origin: string;
  try {
    origin = ollamaOrigin(env.OLLAMA_HOST);
  } catch {
    return { model: 'simulated', note: SIMULATED_NOTE };
  }
  try {
    const res = await fetchImpl(`${origin}/api/tags`, { signal: AbortSignal.timeout(timeoutMs) });
    if (res.ok) {
      const body = (await res.json()) as { models?: Array<{ name?: unknown; model?: unknown }> };
      const names = (body.models ?? [])
        .map((m) => (typeof m.name === 'string' ? m.name : typeof m.model === 'string' ? m.model : ''))
        .filter((n) => /^[\w.:/-]{1,200}$/.test(n));
      if (names[0] !== undefined) {
        return {
          model: `ollama:${names[0]}`,
          note: `answers come from Ollama at ${origin} (model ${names[0]}; set LEASH_MODEL to choose another)`,
        };
      }
    }
  } catch {
    // Nothing there, or not Ollama: the simulated model it is.
  }
  return { model: 'simulated', note: SIMULATED_NOTE };
}
