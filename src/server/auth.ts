// Bearer keys mapped to owners. Keys are compared as sha256 digests with
// timingSafeEqual against every configured key (no early exit), so neither the
// length nor the prefix of a key leaks through response timing.

import { spaFallbackApplies } from './static.ts';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { LeashError } from '../core/errors.ts';

/** The owner of every request when the server runs without keys (loopback only). */
export const LOCAL_OWNER = 'local';

const OWNER_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$/;

/**
 * Parses `LEASH_API_KEYS="key:owner,key2:owner2"` into key → owner. The owner is
 * after the last `:` (so a key may contain `:`). Throws a TypeError naming the
 * bad entry (by position, never echoing the key) for anything malformed.
 */
export function parseApiKeys(spec: string | undefined): Map<string, string> {
  const keys = new Map<string, string>();
  if (spec === undefined || spec.trim() === '') return keys;
  const entries = spec.split(',');
  entries.forEach((raw, i) => {
    const entry = raw.trim();
    const where = `LEASH_API_KEYS entry ${i + 1}`;
    if (entry === '') throw new TypeError(`${where} is empty (expected "key:owner,key2:owner2")`);
    const colon = entry.lastIndexOf(':');
    if (colon < 0) throw new TypeError(`${where} has no ":owner" (expected "key:owner")`);
    const key = entry.slice(0, colon);
    const owner = entry.slice(colon + 1);
    if (key === '') throw new TypeError(`${where} has an empty key`);
    if (/\s/.test(key)) throw new TypeError(`${where}: the key contains whitespace`);
    if (!OWNER_RE.test(owner)) {
      throw new TypeError(`${where}: owner "${owner}" must be 1-128 of letters, digits, "_", ".", "@", "-"`);
    }
    if (keys.has(key)) throw new TypeError(`${where} repeats a key given earlier`);
    keys.set(key, owner);
  });
  return keys;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

type Compare = (a: Buffer, b: Buffer) => boolean;

/**
 * Returns a lookup from a presented key to its owner (null when unknown). Constant
 * time by construction: the presented key is hashed to a fixed 32 bytes and compared
 * with every configured key's digest, all of them, whatever matched (`compare` is
 * injectable so a test can count exactly that).
 */
export function createKeyMatcher(
  apiKeys: Map<string, string>,
  compare: Compare = timingSafeEqual,
): (presented: string) => string | null {
  const table = [...apiKeys].map(([key, owner]) => ({ hash: digest(key), owner }));
  return (presented) => {
    const h = digest(presented);
    let found: string | null = null;
    for (const k of table) {
      if (compare(h, k.hash) && found === null) found = k.owner;
    }
    return found;
  };
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who the request acts for; every task query is scoped to it. */
    owner: string;
  }
  interface FastifyContextConfig {
    /** Answers without a key (probes, the web UI's files). Every other route needs one. */
    public?: boolean;
  }
}

/**
 * Whether a request may go without a key. Decided on the route the router matched
 * (its registered pattern and config), never on `request.url`: the router decodes
 * and normalizes the path its own way, so any check on the raw URL can be walked
 * around with another spelling (`/%61pi/tasks`). Unmatched requests need a key too,
 * except a browser's page load that the web UI's SPA fallback answers with index.html.
 */
export function isPublicRequest(request: FastifyRequest): boolean {
  if (request.is404) return spaFallbackApplies(request);
  if (request.routeOptions.config.public === true) return true;
  // A CORS preflight (@fastify/cors's `OPTIONS *` route) carries no key by design and answers only headers.
  return request.method === 'OPTIONS' && request.routeOptions.url === '*';
}

/** Sets `request.owner` on every request; 401 `unauthorized` when keys are configured and none matches. */
export function installAuth(app: FastifyInstance, apiKeys: Map<string, string>): void {
  app.decorateRequest('owner', LOCAL_OWNER);
  if (apiKeys.size === 0) return;
  const match = createKeyMatcher(apiKeys);
  app.addHook('onRequest', async (request: FastifyRequest) => {
    if (isPublicRequest(request)) return;
    const header = request.headers.authorization;
    if (header === undefined || header === '') {
      throw new LeashError('unauthorized', 'Missing API key: send "Authorization: Bearer <key>"');
    }
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (m === null || m[1] === undefined) {
      throw new LeashError('unauthorized', 'Malformed Authorization header: expected "Bearer <key>"');
    }
    const owner = match(m[1]);
    if (owner === null) throw new LeashError('unauthorized', 'Invalid API key');
    request.owner = owner;
  });
}
