// `startServer`: store → models → runtime → HTTP server, wired as a function, so tests,
// benchmarks and embedding programs run a real server in-process (on port 0 in tests).
// `leash serve` (serve.ts) is this plus the flags, the environment and the signals.

import type { HubOptions } from '../server/workers/hub.ts';
import { workersFromEnv } from './workers-env.ts';
import { pino } from 'pino';
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { createModelRegistry } from '../models/registry.ts';
import type { GgufLimits } from '../models/gguf/spec.ts';
import type { ModelRegistry } from '../models/model.ts';
import type { AnyTaskDefinition } from '../runtime/define-task.ts';
import { Runtime } from '../runtime/runtime.ts';
import type { RuntimeOptions } from '../runtime/runtime.ts';
import { buildServer, type SecurityOptions } from '../server/app.ts';
import type { RateLimitOptions } from '../server/rate-limit.ts';
import type { ConnectionTimeouts } from '../server/timeouts.ts';
import { createMetrics } from '../server/metrics.ts';
import type { Metrics } from '../server/metrics.ts';
import { LeashError } from '../core/errors.ts';
import { openStore } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { builtinTasks } from '../tasks/index.ts';
import { UsageError } from './usage-error.ts';
import { DEFAULT_DB, DEFAULT_HOST, DEFAULT_MODEL, DEFAULT_PORT } from './serve-usage.ts';

/** After the runtime stopped, how long HTTP connections may take to finish before they are cut. */
const FORCE_CLOSE_AFTER_MS = 500;

export interface StartServerOptions {
  host?: string;
  /** 0 = any free port (tests). */
  port?: number;
  /** SQLite file path, or a postgres:// URL. Ignored when `store` is given. */
  db?: string;
  /** An opened store to use instead of opening `db` (it is migrated, and closed on close()). */
  store?: Store;
  model?: string;
  /**
   * Model names callers may use, `*` patterns (LEASH_MODELS / --models); the default
   * model is always allowed. Absent: LEASH_MODELS from the environment, else `simulated*`.
   * Ignored when `models` is given.
   */
  allowModels?: string[];
  /** LEASH_MODELS_DIR and LEASH_GGUF_* limits for `gguf:` models (absent fields: from the environment). */
  gguf?: Partial<GgufLimits>;
  models?: ModelRegistry;
  /** key → owner; empty or absent = no auth (loopback only). */
  apiKeys?: Map<string, string>;
  logger?: Logger;
  tasks?: AnyTaskDefinition[];
  /** Runtime limits and timings (concurrency, maxRunningPerOwner, maxQueuedPerOwner, …). */
  runtime?: Partial<Omit<RuntimeOptions, 'store' | 'models' | 'logger' | 'tasks' | 'observer'>>;
  bodyLimit?: number;
  sseKeepaliveMs?: number;
  /** Requests per minute per API key (LEASH_RATE_LIMIT); off when absent. */
  rateLimit?: RateLimitOptions;
  /** Slow-client limits; defaults in src/server/timeouts.ts. */
  timeouts?: Partial<ConnectionTimeouts>;
  /** Allowed hosts and origins, /metrics exposure, stream caps (SECURITY.md). */
  security?: SecurityOptions;
  /** Remote workers (docs/workers.md); absent: LEASH_WORKER_* from the environment. */
  workers?: HubOptions & { types?: string[] };
}

export interface RunningServer {
  url: string;
  host: string;
  port: number;
  app: FastifyInstance;
  runtime: Runtime;
  store: Store;
  models: ModelRegistry;
  metrics: Metrics;
  /** Stops intake, lets running tasks finish within the grace, then closes HTTP and the store. Idempotent. */
  close(opts?: { graceMs?: number }): Promise<void>;
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(?:\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}

function urlOf(host: string, port: number): string {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `http://${h}:${port}`;
}

/** A typo in --model stops the start (exit 2) instead of failing every task later. */
function defaultModels(spec: string, opts: StartServerOptions, logger: Logger): ModelRegistry {
  try {
    const models = createModelRegistry({
      defaultModel: spec,
      ...(opts.allowModels !== undefined && { allow: opts.allowModels }),
      ...(opts.gguf !== undefined && { gguf: opts.gguf }),
      logger,
    });
    models.resolve();
    return models;
  } catch (err) {
    // A malformed LEASH_GGUF_* value names itself.
    if (err instanceof TypeError) throw new UsageError(err.message);
    throw new UsageError(`Invalid --model / LEASH_MODEL: ${(err as Error).message}`);
  }
}

/** LEASH_MODELS_DIR / --models-dir must be a directory when set: a typo is caught at start, not per request. */
/** A file path / `sqlite:` URL, or `postgres://…` for several nodes over one PostgreSQL. */
async function openDb(db: string, logger: Logger): Promise<Store> {
  try {
    return await openStore(db, {
      onError: (err, what) => logger.warn({ err }, what),
      sqliteThread: process.env.LEASH_SQLITE_THREAD !== '0',
    });
  } catch (err) {
    if (LeashError.is(err, 'invalid_request')) throw new UsageError(`Invalid --db / LEASH_DB: ${err.message}`);
    throw err;
  }
}

export async function startServer(opts: StartServerOptions = {}): Promise<RunningServer> {
  const host = opts.host ?? DEFAULT_HOST;
  const apiKeys = opts.apiKeys ?? new Map<string, string>();
  if (apiKeys.size === 0 && !isLoopbackHost(host)) {
    throw new UsageError(
      `Refusing to listen on ${host} without API keys: set LEASH_API_KEYS="key:owner" or use a loopback host such as 127.0.0.1.`,
    );
  }
  const logger = opts.logger ?? pino({ level: 'info' });
  const store = opts.store ?? (await openDb(opts.db ?? DEFAULT_DB, logger));
  let runtime: Runtime | null = null;
  let app: FastifyInstance | null = null;
  try {
    await store.migrate();
    const models = opts.models ?? defaultModels(opts.model ?? DEFAULT_MODEL, opts, logger);
    const metrics = createMetrics();
    let rt: Runtime;
    try {
      rt = new Runtime({
        ...opts.runtime,
        store,
        models,
        logger,
        tasks: opts.tasks ?? builtinTasks,
        observer: metrics.observer,
      });
    } catch (err) {
      // A type named in LEASH_ISOLATION / LEASH_GRACE_MS that does not exist or can't run so.
      if (err instanceof TypeError && opts.runtime?.typeOverrides) throw new UsageError(err.message);
      throw err;
    }
    runtime = rt;
    const server = buildServer({
      runtime: rt,
      store,
      models,
      apiKeys,
      logger,
      metrics,
      ...(opts.bodyLimit !== undefined && { bodyLimit: opts.bodyLimit }),
      ...(opts.sseKeepaliveMs !== undefined && { sseKeepaliveMs: opts.sseKeepaliveMs }),
      ...(opts.rateLimit !== undefined && { rateLimit: opts.rateLimit }),
      ...(opts.timeouts !== undefined && { timeouts: opts.timeouts }),
      ...(opts.security !== undefined && { security: opts.security }),
      workers: opts.workers ?? workersFromEnv(process.env),
    });
    app = server;
    // Claims start only once every node's remote-worker types are known here: a claim
    // before that could take a remote type's task to a node with no worker for it.
    await server.leashWorkers.types.loaded;
    await rt.start();
    await server.listen({ host, port: opts.port ?? DEFAULT_PORT });
    const addr = server.server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : (opts.port ?? DEFAULT_PORT);

    let closing: Promise<void> | null = null;
    const close = (c: { graceMs?: number } = {}): Promise<void> => {
      closing ??= (async () => {
        // Tasks first: their streams then end with a real terminal event
        // (`task.cancelled` reason shutdown) instead of being cut.
        await rt.stop(c.graceMs === undefined ? {} : { graceMs: c.graceMs });
        // Ends the remaining streams and long polls, then waits for in-flight
        // requests. A connection that never sends a request (a client's spare
        // keep-alive socket) would hold close() until the client drops it: cut
        // whatever is left after a short while.
        const force = setTimeout(() => server.server.closeAllConnections(), FORCE_CLOSE_AFTER_MS);
        try {
          await server.close();
        } finally {
          clearTimeout(force);
        }
        await store.close();
      })();
      return closing;
    };
    return { url: urlOf(host, port), host, port, app: server, runtime: rt, store, models, metrics, close };
  } catch (err) {
    await app?.close().catch(() => {});
    await runtime?.stop({ graceMs: 0 }).catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
}
