// Requests per minute per API key (per owner), with @fastify/rate-limit counting
// in memory on this node. Off unless configured (`LEASH_RATE_LIMIT`): the
// per-owner running/queued limits already bound the work a key can start; this
// bounds the request rate itself (polling loops, floods of bad requests).
//
// The limit is keyed by `request.owner`, so it applies after auth: a request with
// a wrong key is refused 401 by the auth hook and never reaches a counter (bad
// keys cannot exhaust a good key's budget). Over the limit: 429
// `{error: {code: "rate_limited", message}}` with `Retry-After` (seconds).
// Probes and metrics (`/healthz`, `/readyz`, `/metrics`) are never limited; the
// web UI's files, which are served without a key, are limited per client IP. Every
// decision is made on the route that matched, never on the raw URL. WebSocket frames
// draw from the same per-owner budget (`RateCounter.hit`, used by ws.ts).
//
// Counts are kept in memory on each node: with N nodes behind a load balancer a key
// may make up to N × the limit (documented in README and SECURITY.md).

import rateLimitPlugin from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LeashError } from '../core/errors.ts';
import { isPublicRequest } from './auth.ts';

export interface RateLimitOptions {
  /** Requests allowed per key in each window. */
  max: number;
  /** Window length in ms (default one minute). Fixed windows: a burst may reach 2×max across a boundary. */
  timeWindowMs?: number;
}

export const DEFAULT_RATE_WINDOW_MS = 60_000;
/** Owners tracked at once (LRU); far above any real key count. */
const MAX_TRACKED_KEYS = 10_000;

/**
 * `LEASH_RATE_LIMIT`: requests per minute per key, a positive integer; unset,
 * empty, `0` or `off` = no limit. Throws a TypeError for anything else.
 */
export function parseRateLimit(raw: string | undefined): RateLimitOptions | undefined {
  const v = raw?.trim().toLowerCase() ?? '';
  if (v === '' || v === '0' || v === 'off') return undefined;
  if (!/^\d{1,9}$/.test(v)) {
    throw new TypeError(
      `Invalid LEASH_RATE_LIMIT="${raw}": expected requests per minute per key (an integer), or "off".`,
    );
  }
  return { max: Number(v) };
}

type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** Routes never limited: probes and the metrics scraper. */
const UNLIMITED_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Fixed-window counts per key, shared by the HTTP plugin (as its store) and the
 * WebSocket sessions, so frames and requests spend one budget. Keys are evicted
 * oldest-first past `capacity`.
 */
export class RateCounter {
  readonly #counts = new Map<string, { current: number; start: number }>();
  readonly max: number;
  readonly windowMs: number;
  readonly capacity: number;
  constructor(max: number, windowMs: number, capacity = MAX_TRACKED_KEYS) {
    this.max = max;
    this.windowMs = windowMs;
    this.capacity = capacity;
  }

  /** Counts one request for `key`; `ttl` is the ms left in its window. */
  hit(key: string): { current: number; ttl: number } {
    const now = Date.now();
    let e = this.#counts.get(key);
    if (e === undefined || e.start + this.windowMs <= now) {
      this.#counts.delete(key);
      if (this.#counts.size >= this.capacity) {
        const oldest = this.#counts.keys().next();
        if (oldest.done !== true) this.#counts.delete(oldest.value);
      }
      e = { current: 0, start: now };
      this.#counts.set(key, e);
    }
    e.current++;
    return { current: e.current, ttl: e.start + this.windowMs - now };
  }

  /** The key whose budget a request spends once authenticated. */
  static ownerKey(owner: string): string {
    return `owner:${owner}`;
  }

  // The @fastify/rate-limit store interface.
  incr(key: string, cb: (err: Error | null, res: { current: number; ttl: number }) => void): void {
    cb(null, this.hit(key));
  }
  child(): RateCounter {
    return this;
  }
}

/**
 * Registers the per-owner limit on every route (and on unmatched paths) and returns
 * the counter that WebSocket frames also spend. Null without options.
 */
export function installRateLimit(app: FastifyInstance, opts: RateLimitOptions | undefined): RateCounter | null {
  if (opts === undefined) return null;
  const windowMs = opts.timeWindowMs ?? DEFAULT_RATE_WINDOW_MS;
  const counter = new RateCounter(opts.max, windowMs);
  // `global: false`: the plugin's per-route hooks only see routes added after it has
  // loaded (at ready), which would miss every route buildServer adds synchronously.
  // One root hook instead, built from the plugin's handler once it is loaded.
  const store = function SharedCounter(): RateCounter {
    return counter;
  } as unknown as new () => RateCounter;
  void app.register(rateLimitPlugin, { global: false, store });
  let handler: Handler | null = null;
  // onRequest, registered after the auth hook (so `request.owner` is set) and before
  // the web UI's SPA fallback (which answers in onRequest too); before any body is read.
  app.addHook('onRequest', async (request, reply) => {
    if (!request.is404 && UNLIMITED_ROUTES.has(request.routeOptions.url ?? '')) return;
    handler ??= app.rateLimit({
      max: opts.max,
      timeWindow: windowMs,
      // Keyless UI files carry no owner of their own: one budget per client address instead.
      keyGenerator: (req) => (isPublicRequest(req) ? `ip:${req.ip}` : RateCounter.ownerKey(req.owner)),
      errorResponseBuilder: (_req, ctx) =>
        new LeashError(
          'rate_limited',
          `Too many requests: this API key may make ${ctx.max} requests per ${Math.round(windowMs / 1000)} s. Retry in ${ctx.after}.`,
          {
            details: {
              limit: ctx.max,
              window_s: Math.round(windowMs / 1000),
              retry_after_s: Math.ceil(ctx.ttl / 1000),
            },
          },
        ),
    }) as Handler;
    await handler(request, reply);
  });
  return counter;
}
