// The WebSocket handshake of `/api/ws` (and `/api/workers/connect`): where a browser's
// key may come from (it cannot set headers on a WebSocket), which subprotocol is
// selected, what `ws` would refuse, and the plain-HTTP answer of the endpoints.

import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';

export const WS_PATH = '/api/ws';
/** The subprotocol the server selects when the client offers it (next to `bearer.<key>`). */
export const WS_SUBPROTOCOL = 'leash.v1';

/**
 * Removes `api_key` from a request URL's query (every spelling of the name a
 * URLSearchParams reads as it), returning the URL without it and the key found.
 */
export function stripApiKey(url: string): { url: string; key: string | undefined } {
  const q = url.indexOf('?');
  if (q === -1) return { url, key: undefined };
  const path = url.slice(0, q);
  const params = new URLSearchParams(url.slice(q + 1));
  const key = params.get('api_key') ?? undefined;
  if (key === undefined) return { url, key };
  params.delete('api_key');
  const rest = params.toString();
  return { url: rest === '' ? path : `${path}?${rest}`, key };
}

/**
 * Browsers can't send `Authorization` on a WebSocket: for an upgrade, a key from
 * `?api_key=` or a `bearer.<key>` subprotocol becomes that header, so the one auth
 * hook checks every request the same way, on the route the router matches (the raw
 * path is not looked at: any spelling of /api/ws gets the same treatment). The
 * query key is removed from the URL so it never reaches a log line.
 */
export function promoteWsCredentials(req: IncomingMessage): void {
  const stripped = stripApiKey(req.url ?? '');
  req.url = stripped.url;
  let key = stripped.key;
  const proto = req.headers['sec-websocket-protocol'];
  if (key === undefined && typeof proto === 'string') {
    for (const p of proto.split(',')) {
      const t = p.trim();
      if (t.startsWith('bearer.')) {
        key = t.slice('bearer.'.length);
        break;
      }
    }
  }
  const auth = req.headers.authorization;
  if (key !== undefined && key !== '' && (auth === undefined || auth === ''))
    req.headers.authorization = `Bearer ${key}`;
}

/** Selects a subprotocol other than the key when the client offered one; a browser needs one of its own echoed. */
export function selectProtocol(protocols: Set<string>): string | false {
  if (protocols.has(WS_SUBPROTOCOL)) return WS_SUBPROTOCOL;
  for (const p of protocols) if (!p.startsWith('bearer.')) return p;
  for (const p of protocols) return p;
  return false;
}

/** What `ws` would refuse in an upgrade request (RFC 6455 §4.2.1), or null. */
export function handshakeProblem(req: IncomingMessage): string | null {
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !/^[+/0-9A-Za-z]{22}==$/.test(key.trim()))
    return 'missing or invalid Sec-WebSocket-Key header';
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') return 'Sec-WebSocket-Version must be 13';
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') return 'Upgrade header must be "websocket"';
  return null;
}

/** The plain-HTTP answer of a WebSocket endpoint: 426 naming the path. */
export function upgradeRequired(path: string): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> {
  return async (_request, reply) =>
    reply
      .code(426)
      .header('upgrade', 'websocket')
      .send({ error: { code: 'upgrade_required', message: `${path} speaks WebSocket: send an upgrade request` } });
}
