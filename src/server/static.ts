// The web UI: web/dist served at `/` (built by `npm run build:web`, which
// `npm start` and `npm test` run first). One route per built file (no wildcard
// route, so unknown /api paths still answer JSON 404 and wrong methods 405), and
// an SPA fallback: a browser GET for any other non-API path gets index.html so a
// reloaded deep link still opens the app. Without a build, `/` explains how to
// make one.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isUiPath, normalizePath } from './request-path.ts';

export const DEFAULT_WEB_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'dist');

/**
 * True when the SPA fallback answers this unmatched request with index.html: a
 * browser's page load (GET/HEAD accepting HTML) of a path outside the API. Such a
 * request needs no key; a script fetching `/nope.js` gets the JSON 404 instead.
 */
export function spaFallbackApplies(request: FastifyRequest): boolean {
  if (!request.is404 || (request.method !== 'GET' && request.method !== 'HEAD')) return false;
  if (!(request.headers.accept ?? '').includes('text/html')) return false;
  return isUiPath(normalizePath(request.url));
}

const NOT_BUILT_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>leash</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5">
<h1>leash is running</h1>
<p>The web UI has not been built. Run <code>npm run build:web</code> (or <code>npm start</code>, which builds it first), then reload.</p>
<p>The API is at <code>/api</code>; health at <a href="/healthz"><code>/healthz</code></a>.</p>
</body></html>
`;

export interface WebUiOptions {
  /** Folder of the built UI (default web/dist of this checkout). */
  root?: string;
}

/** Registers the UI routes. Call after the API routes (it relies on them being known to the router). */
export function registerWebUi(app: FastifyInstance, opts: WebUiOptions = {}): void {
  const root = opts.root ?? DEFAULT_WEB_ROOT;
  if (!existsSync(join(root, 'index.html'))) {
    app.get('/', { config: { public: true } }, async (_request, reply) =>
      reply.type('text/html; charset=utf-8').send(NOT_BUILT_PAGE),
    );
    return;
  }
  // The built files are the only routes the plugin adds (each carries its `rootPath`):
  // they hold no data and are public; the UI then asks for a key for /api.
  app.addHook('onRoute', (route) => {
    if (typeof (route.config as { rootPath?: unknown } | undefined)?.rootPath === 'string')
      route.config = { ...route.config, public: true };
  });
  // Loaded with the other plugins when the server starts (ready/listen).
  void app.register(fastifyStatic, {
    root,
    prefix: '/',
    // Routes for the files present now, instead of a `/*` route that would swallow
    // unknown API paths and turn every 405 into a GET-only route.
    wildcard: false,
    index: ['index.html'],
    // Hashed asset names never change content; index.html must be re-read to pick up a new build.
    cacheControl: false,
    setHeaders(reply, path) {
      if (/[\\/]assets[\\/]/.test(path)) reply.header('cache-control', 'public, max-age=31536000, immutable');
      else reply.header('cache-control', 'no-cache');
    },
  });

  // SPA fallback: runs for requests no route matched; the 404 handler answers the rest.
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (!spaFallbackApplies(request)) return;
    reply.header('cache-control', 'no-cache');
    return reply.sendFile('index.html');
  });
}
