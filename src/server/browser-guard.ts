// What a web page in the user's browser may do to a leash server. Browsers attach
// no Bearer key on their own, so with keys a page can do nothing the key does not
// allow. Without keys (a loopback-only server, everything owned by `local`) the
// browser is the attacker's way in, in two forms this guard refuses:
//   - DNS rebinding: a page at evil.example re-points its name at 127.0.0.1 and
//     reads the API as same-origin. Its requests carry `Host: evil.example`, so
//     only loopback Host names (plus LEASH_ALLOWED_HOSTS) are served.
//   - Cross-site writes: a form POST or a WebSocket from another origin needs no
//     CORS permission. A state-changing request or an upgrade whose `Origin` is
//     not the server's own (nor in LEASH_ALLOWED_ORIGINS) is refused, keys or not.
// Requests without `Origin` (curl, SDKs, same-origin GETs) pass: only browsers send
// it, and they always send it on cross-site POSTs and WebSocket upgrades.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LeashError } from '../core/errors.ts';

export interface BrowserGuardOptions {
  /** No API keys configured: enforce the loopback Host check too. */
  keyless: boolean;
  /** Host names (no port) served besides loopback ones when keyless (LEASH_ALLOWED_HOSTS). */
  allowedHosts?: readonly string[];
  /** Origins besides the server's own allowed to write and to open WebSockets (LEASH_ALLOWED_ORIGINS). */
  allowedOrigins?: readonly string[];
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The host name of a `Host` header, lower-case, without port, brackets or a trailing dot. */
export function hostNameOf(host: string): string {
  const h = host.trim().toLowerCase();
  const name = h.startsWith('[') ? h.slice(1, h.indexOf(']') === -1 ? undefined : h.indexOf(']')) : h.split(':', 1)[0];
  return (name ?? '').replace(/\.$/, '');
}

export function isLoopbackName(name: string): boolean {
  return name === 'localhost' || name === '::1' || /^127(?:\.\d{1,3}){3}$/.test(name);
}

/** `http://Example.com:80/x` → `http://example.com`; null for anything that is not an http(s) origin. */
export function normalizeOrigin(origin: string): string | null {
  try {
    const u = new URL(origin);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

export function installBrowserGuard(app: FastifyInstance, opts: BrowserGuardOptions): void {
  const hosts = new Set((opts.allowedHosts ?? []).map(hostNameOf));
  const origins = new Set<string>();
  for (const o of opts.allowedOrigins ?? []) {
    const n = normalizeOrigin(o);
    if (n === null) throw new TypeError(`LEASH_ALLOWED_ORIGINS: "${o}" is not an origin like http://localhost:5173`);
    origins.add(n);
  }

  app.addHook('onRequest', async (request: FastifyRequest) => {
    const host = request.headers.host;
    if (opts.keyless && host !== undefined) {
      const name = hostNameOf(host);
      if (!isLoopbackName(name) && !hosts.has(name)) {
        throw new LeashError(
          'host_not_allowed',
          `This server has no API keys, so it answers only to loopback host names (localhost, 127.0.0.1, [::1]); ` +
            `"${name.slice(0, 100)}" is not one. Add it to LEASH_ALLOWED_HOSTS, or configure LEASH_API_KEYS.`,
        );
      }
    }
    const writes = !SAFE_METHODS.has(request.method) || request.raw.headers.upgrade !== undefined;
    const origin = request.headers.origin;
    if (!writes || origin === undefined) return;
    const o = normalizeOrigin(origin);
    if (o !== null && (origins.has(o) || sameOrigin(o, host))) return;
    throw new LeashError(
      'origin_not_allowed',
      `Cross-site request refused: Origin "${origin.slice(0, 200)}" is not this server's own. ` +
        `Add it to LEASH_ALLOWED_ORIGINS to allow it.`,
    );
  });
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  const h = host.trim().toLowerCase();
  return origin === `http://${h}` || origin === `https://${h}` || origin === normalizeOrigin(`http://${h}`);
}
