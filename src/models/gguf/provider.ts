// `gguf:<name>`: a local GGUF model run in-process with node-llama-cpp (llama.cpp).
//
//   gguf:qwen.gguf?threads=4&ctx=2048&temp=0.7&seed=1   (options: spec.ts)
//
// `<name>` is a file in the operator's directory LEASH_MODELS_DIR (subdirectories
// allowed); without it gguf models are off. Names are checked before the disk is
// touched and answered alike when they are no model here (files.ts); why a file in the
// directory failed to load goes to the server log only. Loaded models are shared,
// bounded and unloaded when idle (loaded-models.ts); each call gets its own context
// (stream.ts).

import type { ModelInfo, ModelProvider } from '../model.ts';
import { ggufOff, listModelFiles, locateModelFile } from './files.ts';
import type { GgufLoadFailure } from './loaded-models.ts';
import { ggufLimitsFromEnv, parseGgufSpec, type GgufLimits } from './spec.ts';
import { createGgufModel } from './stream.ts';

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
