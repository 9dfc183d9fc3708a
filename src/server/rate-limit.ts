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
// web UI's files, which are served without a key, are limited per client IP.

import rateLimitPlugin from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LeashError } from '../runtime/errors.ts';
import { PUBLIC_PATHS } from './auth.ts';
import { isUiPath } from './static.ts';

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

/** Registers the per-owner limit on every route (and on unmatched paths). No-op without options. */
export function installRateLimit(app: FastifyInstance, opts: RateLimitOptions | undefined): void {
  if (opts === undefined) return;
  const windowMs = opts.timeWindowMs ?? DEFAULT_RATE_WINDOW_MS;
  // `global: false`: the plugin's per-route hooks only see routes added after it has
  // loaded (at ready), which would miss every route buildServer adds synchronously.
  // One root hook instead, built from the plugin's handler once it is loaded.
  void app.register(rateLimitPlugin, { global: false, cache: MAX_TRACKED_KEYS });
  let handler: Handler | null = null;
  // preParsing: after the auth hook (onRequest) has set `request.owner`, before any body is read.
  app.addHook('preParsing', async (request, reply, payload) => {
    const path = request.url.split('?', 1)[0] ?? '';
    if (PUBLIC_PATHS.has(path)) return payload;
    handler ??= app.rateLimit({
      max: opts.max,
      timeWindow: windowMs,
      // UI paths carry no key (their owner is the default one): one budget per client address instead.
      keyGenerator: (req) => (isUiPath(req.url.split('?', 1)[0] ?? '') ? `ip:${req.ip}` : `owner:${req.owner}`),
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
    return payload;
  });
}
