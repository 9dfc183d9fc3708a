// `leash serve`: store → models → runtime → HTTP server, and a graceful stop on
// SIGTERM/SIGINT. `startServer` is the same wiring as a function, so tests and
// benchmarks run a real server in-process on port 0.

import type { HubOptions } from '../server/workers/hub.ts';
import { workersFromEnv } from './workers-env.ts';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { statSync } from 'node:fs';
import { createModelRegistry } from '../models/registry.ts';
import { DEFAULT_MODEL_PATTERNS, parseModelPatterns } from '../models/allowlist.ts';
import { ggufLimitsFromEnv, type GgufLimits } from '../models/gguf/spec.ts';
import type { ModelRegistry } from '../models/model.ts';
import type { AnyTaskDefinition } from '../runtime/define-task.ts';
import { Runtime } from '../runtime/runtime.ts';
import type { RuntimeOptions, TypeOverride } from '../runtime/runtime.ts';
import { ISOLATIONS, type Isolation } from '../core/types.ts';
import { buildServer, type SecurityOptions } from '../server/app.ts';
import { parseRateLimit, type RateLimitOptions } from '../server/rate-limit.ts';
import type { ConnectionTimeouts } from '../server/timeouts.ts';
import { createMetrics } from '../server/metrics.ts';
import type { Metrics } from '../server/metrics.ts';
import { LeashError } from '../core/errors.ts';
import { openStore } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { builtinTasks } from '../tasks/index.ts';
import { UsageError } from './usage-error.ts';
import { apiKeysFromEnv, securityFromEnv } from './security-env.ts';
import { loadTaskModules } from './task-modules.ts';
import { detectDefaultModel, SIMULATED_NOTE } from './default-model.ts';
import { contextCharsFromEnv } from '../threads/context-budget.ts';

export { UsageError };

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8080;
export const DEFAULT_DB = './leash.db';
export const DEFAULT_MODEL = 'simulated';
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
function checkModelsDir(dir: string | undefined): void {
  if (dir === undefined) return;
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new UsageError(`Invalid --models-dir / LEASH_MODELS_DIR "${dir}": not a directory.`);
}

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
    await rt.start();
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

export const SERVE_USAGE = `Usage: leash serve [--host HOST] [--port PORT] [--db FILE] [--model MODEL]
                   [--models PATTERNS] [--models-dir DIR] [--tasks FILE]...

Runs the leash HTTP server.

Options (environment variable in brackets):
  --host HOST     interface to listen on [HOST] (default ${DEFAULT_HOST})
  --port PORT     TCP port, 0 for any free one [PORT] (default ${DEFAULT_PORT})
  --db FILE|URL   SQLite database file, or postgres://user@host/db to run several
                  nodes over one PostgreSQL [LEASH_DB] (default ${DEFAULT_DB})
  --model MODEL   default model, e.g. simulated or openai:gpt-4o-mini [LEASH_MODEL] (default: the
                  first model of an Ollama answering at OLLAMA_HOST, else ${DEFAULT_MODEL})
  --tasks FILE    a module of your own task types (export default defineTask({...}) or
                  an array); repeat for several [LEASH_TASKS, comma-separated]
  --models LIST   models callers may name: comma list, * matches anything, matched on the
                  name before any ?parameters, e.g. simulated*,openai:gpt-4o-mini,gguf:*
                  [LEASH_MODELS] (default: the default model and simulated*); any other
                  name is refused with 400 model_not_allowed before any file or network use
  --models-dir DIR  the only directory gguf:<file> models are loaded from [LEASH_MODELS_DIR]
                  (default unset: gguf models are off)
  -h, --help      show this help

Also: LEASH_API_KEYS="key:owner,key2:owner2" (required for a non-loopback host), or
      LEASH_API_KEYS_FILE=path (the same entries, one per line; keeps keys out of the
      environment), LEASH_ALLOWED_HOSTS (without keys, host names served besides
      localhost/127.0.0.1/[::1]; default none), LEASH_ALLOWED_ORIGINS (origins besides
      the server's own that may write, open WebSockets and read answers via CORS;
      default none), LEASH_METRICS_PUBLIC=1 (/metrics without a key; default: it needs
      one when keys are set), LEASH_MAX_STREAMS_PER_OWNER (open event streams, long
      polls and WebSockets per owner on a node, 429 past it; default 100),
      LEASH_LOG_LEVEL (default info; logs go to stderr as JSON),
      LEASH_CONCURRENCY (tasks this node runs at once, default 64),
      LEASH_MAX_RUNNING_PER_OWNER (default 4), LEASH_MAX_QUEUED_PER_OWNER (default 1000),
      LEASH_RETENTION_DAYS (ended tasks kept, default 7), LEASH_SHUTDOWN_GRACE_MS (default 10000),
      LEASH_LEASE_MS (PostgreSQL: a stopped node's tasks are recovered this long after its
      last heartbeat, default 30000), LEASH_NODE_ID (this node's name in the database and
      logs, default random), LEASH_RATE_LIMIT (requests per minute per API key, answered
      429 with Retry-After past it; default off), LEASH_SQLITE_THREAD=0 (run SQLite on the
      main thread instead of its own), LEASH_EVENT_BATCH_MS (streamed events are committed
      at most this often; readers get them at once from memory; default 100 on SQLite,
      0 on PostgreSQL), LEASH_THREAD_CONTEXT_CHARS (the most characters of a thread sent to
      the model per turn, oldest turns left out first; default 32000), LEASH_ISOLATION (how
      task types run, e.g. "chat=process,analyze=worker"; "*=worker" for every type; inline
      handlers that ignore a cancel are detached after their grace, isolated ones killed),
      LEASH_GRACE_MS (how long a handler may take to stop after a cancel, by type, e.g.
      "chat=5000" or "*=3000"; default 2000), LEASH_MAX_UNWRITTEN_EVENTS (events waiting for
      a store that is down, past which creates answer 503 and tasks that emit fail; default
      100000).
      Remote workers (docs/workers.md): LEASH_WORKER_TYPES (task types served by workers,
      known from the start; set it on every node), LEASH_WORKER_LEASE_MS (a worker silent
      this long loses its tasks; default 15000), LEASH_WORKER_PING_MS (default 5000),
      LEASH_WORKER_ACCEPT_MS (an assignment not accepted in time goes to another worker;
      default 5000).
      gguf limits: LEASH_GGUF_MAX_CONTEXT (largest context a call gets, tokens; a request
      may ask less; default 4096), LEASH_GGUF_THREADS (threads per call and the most a
      request may ask; default the CPU's math cores), LEASH_GGUF_IDLE_MS (a loaded model
      unused this long is unloaded; default 600000), LEASH_GGUF_MAX_LOADED (models loaded
      at once; past it the least recently used idle one is unloaded, and when all are in
      use a call fails with 503 models_busy; default 2).`;

const RUNTIME_ENV = {
  LEASH_CONCURRENCY: 'concurrency',
  LEASH_MAX_RUNNING_PER_OWNER: 'maxRunningPerOwner',
  LEASH_MAX_QUEUED_PER_OWNER: 'maxQueuedPerOwner',
  LEASH_SHUTDOWN_GRACE_MS: 'shutdownGraceMs',
  LEASH_LEASE_MS: 'leaseMs',
  LEASH_EVENT_BATCH_MS: 'eventBatchMs',
  LEASH_MAX_UNWRITTEN_EVENTS: 'maxUnwrittenEvents',
} as const;
const RUNTIME_ENV_MIN: Partial<Record<string, number>> = { shutdownGraceMs: 0, leaseMs: 500, eventBatchMs: 0 };

/** Runtime limits from the environment; a value that is not a positive integer is a usage error. */
export function runtimeLimitsFromEnv(env: NodeJS.ProcessEnv): NonNullable<StartServerOptions['runtime']> {
  const out: NonNullable<StartServerOptions['runtime']> = {};
  const int = (name: string, raw: string, min: number): number => {
    if (!/^\d{1,12}$/.test(raw) || Number(raw) < min) {
      throw new UsageError(`Invalid ${name}="${raw}": expected an integer ≥ ${min}.`);
    }
    return Number(raw);
  };
  for (const [name, key] of Object.entries(RUNTIME_ENV)) {
    const raw = env[name]?.trim();
    if (raw) out[key] = int(name, raw, RUNTIME_ENV_MIN[key] ?? 1);
  }
  if (out.eventBatchMs !== undefined && out.eventBatchMs > 60_000) {
    throw new UsageError(`Invalid LEASH_EVENT_BATCH_MS="${out.eventBatchMs}": at most 60000 (ms).`);
  }
  const nodeId = env.LEASH_NODE_ID?.trim();
  if (nodeId) {
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(nodeId)) {
      throw new UsageError(`Invalid LEASH_NODE_ID="${nodeId}": use 1–64 letters, digits, '_', '.', ':' or '-'.`);
    }
    out.nodeId = nodeId;
  }
  const days = env.LEASH_RETENTION_DAYS?.trim();
  if (days) out.retentionMs = int('LEASH_RETENTION_DAYS', days, 1) * 24 * 3_600_000;
  const overrides: Record<string, TypeOverride> = {};
  for (const [type, value] of typePairs('LEASH_ISOLATION', env.LEASH_ISOLATION)) {
    if (!(ISOLATIONS as readonly string[]).includes(value)) {
      throw new UsageError(`Invalid LEASH_ISOLATION entry "${type}=${value}": use inline, worker or process.`);
    }
    (overrides[type] ??= {}).isolation = value as Isolation;
  }
  for (const [type, value] of typePairs('LEASH_GRACE_MS', env.LEASH_GRACE_MS)) {
    (overrides[type] ??= {}).graceMs = int(`LEASH_GRACE_MS (${type})`, value, 0);
  }
  if (Object.keys(overrides).length > 0) out.typeOverrides = overrides;
  return out;
}

/** `type=value,type2=value` (`*` for every type) → pairs; a malformed entry is a usage error. */
function typePairs(name: string, raw: string | undefined): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const entry of (raw ?? '').split(',').map((e) => e.trim())) {
    if (entry === '') continue;
    const m = /^(\*|[a-z][a-z0-9_.-]{0,63})=(\S+)$/.exec(entry);
    if (!m) throw new UsageError(`Invalid ${name} entry "${entry}": expected type=value (or *=value).`);
    out.push([m[1]!, m[2]!]);
  }
  return out;
}

/** `LEASH_RATE_LIMIT`: requests per minute per API key; unset, `0` or `off` = no limit. */
export function rateLimitFromEnv(env: NodeJS.ProcessEnv): RateLimitOptions | undefined {
  try {
    return parseRateLimit(env.LEASH_RATE_LIMIT);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function parsePort(raw: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
    throw new UsageError(`Invalid port "${raw}": expected a number from 0 to 65535.`);
  }
  return Number(raw);
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Runs `leash serve` until a signal; resolves with the process exit code. */
export async function runServe(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        db: { type: 'string' },
        model: { type: 'string' },
        tasks: { type: 'string', multiple: true },
        models: { type: 'string' },
        'models-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${SERVE_USAGE}`);
  }
  if (values.help === true) {
    process.stdout.write(SERVE_USAGE + '\n');
    return 0;
  }
  const level = env.LEASH_LOG_LEVEL?.trim() || 'info';
  if (!LOG_LEVELS.includes(level)) {
    throw new UsageError(`Invalid LEASH_LOG_LEVEL "${level}": use one of ${LOG_LEVELS.join(', ')}.`);
  }
  try {
    contextCharsFromEnv(env); // read by each chat run: a typo stops the start instead
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const apiKeys = apiKeysFromEnv(env);
  const security = securityFromEnv(env);
  const modulePaths =
    values.tasks ??
    (env.LEASH_TASKS ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '');
  const ownTasks = await loadTaskModules(modulePaths, new Map(builtinTasks.map((t) => [t.type, 'a built-in type'])));
  const host = values.host ?? (env.HOST?.trim() || DEFAULT_HOST);
  const portRaw = values.port ?? env.PORT?.trim();
  const port = portRaw === undefined || portRaw === '' ? DEFAULT_PORT : parsePort(portRaw);
  let gguf: GgufLimits;
  try {
    gguf = ggufLimitsFromEnv(env);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const modelsDir = values['models-dir']?.trim() || gguf.modelsDir;
  checkModelsDir(modelsDir);
  const allowModels = parseModelPatterns(values.models ?? env.LEASH_MODELS);
  // Logs on stderr keep stdout for the one line scripts read (the URL).
  const logger = pino({ level, base: { pid: process.pid } }, pino.destination(2));

  // Unset: a real model when Ollama answers, else the simulated one, said plainly.
  const explicit = values.model ?? (env.LEASH_MODEL?.trim() || undefined);
  const choice: { model: string; note: string | null } =
    explicit === undefined
      ? await detectDefaultModel(env)
      : { model: explicit, note: explicit.startsWith('simulated') ? SIMULATED_NOTE : null };
  const server = await startServer({
    host,
    port,
    runtime: runtimeLimitsFromEnv(env),
    rateLimit: rateLimitFromEnv(env),
    db: values.db ?? (env.LEASH_DB?.trim() || DEFAULT_DB),
    model: choice.model,
    // Explicit (not left to the environment), so the flags win and unset means the default.
    allowModels: allowModels ?? [...DEFAULT_MODEL_PATTERNS],
    gguf: { ...gguf, modelsDir },
    apiKeys,
    security,
    logger,
    ...(ownTasks.length > 0 && { tasks: [...builtinTasks, ...ownTasks] }),
  });
  process.stdout.write(`leash listening on ${server.url}\n`);
  if (choice.note !== null) process.stdout.write(`model ${choice.model}: ${choice.note}\n`);
  if (apiKeys.size === 0) logger.info('no LEASH_API_KEYS: no auth, every request is owner "local"');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // Second signal: the operator doesn't want to wait.
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing running tasks (send the signal again to exit now)');
      server.close().then(
        () => {
          logger.info('stopped');
          resolve(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'error during shutdown');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
