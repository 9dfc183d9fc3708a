// The process-wide llama.cpp state: native resources, one set per process. Each model
// file is loaded once (lazily; concurrent first calls share the load) and is unloaded
// after LEASH_GGUF_IDLE_MS without a call. At most LEASH_GGUF_MAX_LOADED files are
// loaded at once: a new one evicts the least recently used idle one, and when every
// loaded model is in a call the new call fails at once with 503 `models_busy` (no
// queue: memory is what the bound protects, and a waiting call would hold its task slot
// with no end in sight).
//
// node-llama-cpp uses the prebuilt binaries from its @node-llama-cpp/* npm packages
// (`build: 'never'`, `skipDownload: true`): nothing is built or downloaded at run time.
// It is imported on the first call, so servers that never use `gguf:` never load it.
// LEASH_GGUF_GPU picks a GPU backend (`auto`, `cuda`, `vulkan`, `metal`); the default
// is CPU only.

import type { Llama, LlamaModel } from 'node-llama-cpp';
import { LeashError } from '../../core/errors.ts';
import { errorText } from '../error-text.ts';
import { notLoadable } from './files.ts';
import { GGUF_DEFAULT_LIMITS, type GgufLimits } from './spec.ts';

export type Nlc = typeof import('node-llama-cpp');

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
/** Counted here (loads, unloads) and by the token loop (stream.ts: calls holding a context, tokens sampled). */
export const stats = { loads: 0, unloads: 0, activeCalls: 0, generatedTokens: 0 };

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

export const loadNlc = (): Promise<Nlc> => (nlcPromise ??= import('node-llama-cpp'));

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
