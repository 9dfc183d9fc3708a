// The HTTP server: Fastify with leash's error shape, bearer auth, metrics, health
// probes, the task and thread routes. WebSocket and the OpenAI surface register
// on the returned instance the same way.

import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ModelRegistry } from '../models/model.ts';
import { newId } from '../core/ids.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { Store } from '../store/store.ts';
import { installAuth } from './auth.ts';
import { installErrorHandling, sendError } from './error-handler.ts';
import { registerHealthRoutes } from './health.ts';
import type { Metrics } from './metrics.ts';
import { createMetrics } from './metrics.ts';
import { registerTaskRoutes } from './routes/tasks.ts';
import { registerThreadRoutes } from './routes/threads.ts';
import { registerOpenAiRoutes } from './openai/index.ts';
import { registerWebSocket, stripApiKey } from './ws.ts';
import { WorkerHub, type HubOptions } from './workers/hub.ts';
import { EVERY_OWNER } from './workers/remote-types.ts';
import { registerWorkerRoutes } from './workers/route.ts';
import { registerWorkerMetrics } from './workers/metrics.ts';
import { Threads } from '../threads/threads.ts';
import type { TaskRouteDeps } from './routes/tasks.ts';
import { DEFAULT_KEEPALIVE_MS } from './sse.ts';
import { registerWebUi } from './static.ts';
import { registerApiDocs } from './openapi/routes.ts';
import { installRateLimit, type RateLimitOptions } from './rate-limit.ts';
import { installBrowserGuard, normalizeOrigin } from './browser-guard.ts';
import { installSecurityHeaders } from './security-headers.ts';
import { StreamCaps } from './stream-caps.ts';
import { connectionOptions, type ConnectionTimeouts } from './timeouts.ts';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from './json-depth.ts';
import { LeashError } from '../core/errors.ts';

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export interface BuildServerOptions {
  runtime: Runtime;
  store: Store;
  models: ModelRegistry;
  /** key → owner; empty = no auth, every request is owner `local`. */
  apiKeys: Map<string, string>;
  logger: Logger;
  /** Largest accepted request body in bytes (default 1 MiB). */
  bodyLimit?: number;
  /** Share the metrics whose observer the Runtime was given; created here otherwise. */
  metrics?: Metrics;
  /** SSE comment interval (default 15 s). */
  sseKeepaliveMs?: number;
  /** Requests per window per API key (off when absent). */
  rateLimit?: RateLimitOptions;
  /** Slow-client limits (headers / whole request / keep-alive); defaults in timeouts.ts. */
  timeouts?: Partial<ConnectionTimeouts>;
  /** Browser-facing rules, stream caps and /metrics exposure (SECURITY.md). */
  security?: SecurityOptions;
  /** Remote workers (docs/workers.md): timings, and types served remotely from the start (LEASH_WORKER_TYPES). */
  workers?: HubOptions & { types?: readonly string[] };
}

export interface SecurityOptions {
  /** Host names served besides loopback ones when there are no keys (LEASH_ALLOWED_HOSTS). */
  allowedHosts?: readonly string[];
  /** Origins allowed to write, open WebSockets and read answers (CORS) (LEASH_ALLOWED_ORIGINS). */
  allowedOrigins?: readonly string[];
  /** `/metrics` without a key (LEASH_METRICS_PUBLIC=1); it needs one by default when keys are set. */
  metricsPublic?: boolean;
  /** Open streams, long polls and WebSockets per owner on this node (LEASH_MAX_STREAMS_PER_OWNER). */
  maxStreamsPerOwner?: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Aborts when the server starts closing: open streams and long polls end. */
    leashClosing: AbortSignal;
    leashMetrics: Metrics;
    /** What route modules registered after buildServer (threads, OpenAI surface) need to stream tasks. */
    leashTaskDeps: TaskRouteDeps;
    /** Connected remote workers and their attempts. */
    leashWorkers: WorkerHub;
  }
}

const REQUEST_ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

export function buildServer(opts: BuildServerOptions): FastifyInstance {
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const app = Fastify({
    loggerInstance: opts.logger,
    bodyLimit,
    ...connectionOptions(opts.timeouts),
    // Open SSE streams must not hold up close(); they are ended by `leashClosing`.
    forceCloseConnections: 'idle',
    // Accept the caller's request id when it is harmless, so logs can be joined up.
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && REQUEST_ID_RE.test(h) ? h : newId('req');
    },
    // A key is never taken from a plain request's query string, and must never reach
    // a log line from there either (upgrades have theirs promoted to a header in ws.ts).
    rewriteUrl: (req) => stripApiKey(req.url ?? '/').url,
    // Errors raised before routing (e.g. a malformed URL) get the same shape.
    frameworkErrors: (err, request, reply) => {
      // An upgrade request refused before routing (e.g. a malformed URL) reaches no
      // route hook that would close its socket: close it once the answer is out.
      if (request.raw.headers.upgrade !== undefined) reply.raw.once('finish', () => request.raw.socket.destroy());
      sendError(request, reply, err);
    },
  }) as unknown as FastifyInstance;

  const closing = new AbortController();
  const metrics = opts.metrics ?? createMetrics();
  metrics.setCountSource(() => opts.runtime.countByStatus());
  app.decorate('leashClosing', closing.signal);
  app.decorate('leashMetrics', metrics);
  app.addHook('preClose', async () => {
    closing.abort();
  });

  // Only JSON bodies. An empty body with a JSON content type is "no body" (clients
  // often send the header on a bodiless POST like cancel), not an error.
  app.removeContentTypeParser('text/plain');
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    if (jsonDepthExceeds(text)) {
      return done(new LeashError('invalid_json', `Request body nests deeper than ${MAX_JSON_DEPTH} levels`), undefined);
    }
    jsonParser(req, text, done);
  });

  app.addHook('onRequest', async (request, reply) => {
    // On the raw response so it is also sent on hijacked (SSE) replies.
    reply.raw.setHeader('x-request-id', request.id);
    reply.raw.once('close', () => {
      // Route pattern, never the concrete URL: ids must not become label values.
      const route = request.is404 ? 'unmatched' : (request.routeOptions.url ?? 'unmatched');
      metrics.recordRequest(request.method, route, reply.raw.statusCode);
    });
  });

  const security = opts.security ?? {};
  const allowedOrigins = (security.allowedOrigins ?? []).map((o) => {
    const n = normalizeOrigin(o);
    if (n === null) throw new TypeError(`LEASH_ALLOWED_ORIGINS: "${o}" is not an origin like http://localhost:5173`);
    return n;
  });
  // Order matters: who may talk to us at all (Host, Origin), then who they are (key), then how often.
  installBrowserGuard(app, {
    keyless: opts.apiKeys.size === 0,
    allowedHosts: security.allowedHosts ?? [],
    allowedOrigins,
  });
  installAuth(app, opts.apiKeys);
  const rateCounter = installRateLimit(app, opts.rateLimit);
  installErrorHandling(app);
  installSecurityHeaders(app, allowedOrigins);
  const streams = new StreamCaps(security.maxStreamsPerOwner);

  registerHealthRoutes(app, { runtime: opts.runtime, store: opts.store });
  app.get('/metrics', { config: { public: security.metricsPublic === true } }, async (_request, reply) => {
    reply.header('content-type', metrics.contentType);
    return metrics.registry.metrics();
  });
  const taskDeps: TaskRouteDeps = {
    runtime: opts.runtime,
    keepaliveMs: opts.sseKeepaliveMs ?? DEFAULT_KEEPALIVE_MS,
    closing: closing.signal,
    streams,
  };
  app.decorate('leashTaskDeps', taskDeps);
  registerTaskRoutes(app, taskDeps);
  // What the web UI needs to say which model answers (the OpenAI-shaped /v1/models has no "default").
  app.get('/api/models', async () => ({ default: opts.models.defaultModel, data: opts.models.list() }));
  const threads = new Threads(opts.runtime);
  registerThreadRoutes(app, { ...taskDeps, threads });
  registerOpenAiRoutes(app, { ...taskDeps, threads });
  registerWebSocket(app, { runtime: opts.runtime, threads, closing: closing.signal, streams, rateCounter });
  const hub = new WorkerHub(opts.runtime, opts.logger, opts.workers);
  for (const t of opts.workers?.types ?? []) {
    if (!hub.types.declare(EVERY_OWNER, t))
      throw new TypeError(`LEASH_WORKER_TYPES: "${t}" is a type the server serves itself`);
  }
  app.decorate('leashWorkers', hub);
  registerWorkerMetrics(metrics.registry, hub);
  app.addHook('onClose', async () => hub.close());
  registerWorkerRoutes(app, hub, rateCounter);
  registerApiDocs(app);
  registerWebUi(app);
  return app;
}
