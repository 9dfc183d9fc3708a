// GET /v1/models and /v1/models/:id from the model registry. Any spec the registry
// resolves is a model (e.g. `simulated?tps=5`, `openai:gpt-4o-mini`) if the allowlist
// (LEASH_MODELS) allows it; the list shows the allowed ones it knows by name: the
// default model, exact names in the allowlist, the gguf files in LEASH_MODELS_DIR.

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Model } from '../../models/model.ts';
import { LeashError } from '../../core/errors.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import { OpenAiError } from './errors.ts';
import { modelObject } from './shapes.ts';

/** Resolves a model a request names; errors read as OpenAI's and name `param`. */
export function resolveModel(runtime: Runtime, spec: string, param = 'model'): Model {
  try {
    return runtime.models.resolve(spec);
  } catch (e) {
    if (LeashError.is(e, 'unknown_model')) {
      throw new OpenAiError(
        404,
        'model_not_found',
        `The model \`${spec}\` does not exist or you do not have access to it. ${e.message}`,
        param,
      );
    }
    if (LeashError.is(e, 'model_unavailable')) throw new OpenAiError(400, 'model_unavailable', e.message, param);
    if (LeashError.is(e, 'model_not_allowed')) throw new OpenAiError(400, 'model_not_allowed', e.message, param);
    throw e;
  }
}

/** `openai:gpt-4o` → `openai`; `simulated?tps=5` → `simulated`. */
const providerOf = (spec: string): string => /^[a-z][a-z0-9_-]*/.exec(spec)?.[0] ?? 'leash';

const idParams = z.object({ id: z.string().min(1).max(200) });

export function registerModelRoutes(v1: FastifyInstance, runtime: Runtime, created: number): void {
  v1.get('/models', async () => ({
    object: 'list',
    data: runtime.models.list().map((m) => modelObject(m.id, m.provider, created)),
  }));

  v1.get('/models/:id', async (request) => {
    const p = idParams.safeParse(request.params);
    const id = p.success ? p.data.id : '';
    const known = runtime.models.list().find((m) => m.id === id);
    if (known) return modelObject(known.id, known.provider, created);
    if (id === '') throw new OpenAiError(404, 'model_not_found', 'The model does not exist.', 'model');
    resolveModel(runtime, id);
    return modelObject(id, providerOf(id), created);
  });
}
