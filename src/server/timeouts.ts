// Connection-level limits against slow or broken clients (slowloris): the request
// line and headers must arrive within `headersMs`, the whole request (body
// included) within `requestMs`. Both count only until the request has been
// received, so SSE streams, long polls and WebSocket sockets are not cut by them.
// Fastify leaves Node's request timeout off (0) by default; this turns it on.
//
// What Node refuses before a request reaches Fastify (a timeout, headers over
// Node's 16 KiB limit, bytes that are not HTTP) is answered in leash's error shape
// too: 408 `request_timeout`, 431 `headers_too_large`, 400 `invalid_request`.

import type { ServerOptions } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';

export interface ConnectionTimeouts {
  /** Request line + headers must arrive within this (ms). */
  headersMs: number;
  /** The whole request, body included, must arrive within this (ms); ≥ headersMs. */
  requestMs: number;
  /** An idle keep-alive connection is closed after this (ms). */
  keepAliveMs: number;
  /** How often Node looks for requests past those deadlines: one is cut at most this late (ms). */
  checkIntervalMs: number;
}

export const DEFAULT_TIMEOUTS: ConnectionTimeouts = {
  headersMs: 15_000,
  // 1 MiB (the default body limit) in 60 s is ~17 KB/s: any real client is faster.
  requestMs: 60_000,
  keepAliveMs: 72_000, // Fastify's default, above common load balancers' 60 s
  checkIntervalMs: 5_000,
};

interface ClientErrorShape {
  status: number;
  reason: string;
  code: string;
  message: string;
}

function shapeOf(err: { code?: unknown }): ClientErrorShape {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        reason: 'Request Timeout',
        code: 'request_timeout',
        message: 'The request was not received in time',
      };
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        reason: 'Request Header Fields Too Large',
        code: 'headers_too_large',
        message: 'Request headers are too large',
      };
    default:
      return { status: 400, reason: 'Bad Request', code: 'invalid_request', message: 'Malformed HTTP request' };
  }
}

/** Answers what Node's parser refused (before any route) with a leash JSON error, then closes the socket. */
function clientErrorHandler(this: { log: FastifyBaseLogger }, err: Error & { code?: unknown }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const s = shapeOf(err);
  this.log.debug({ code: err.code }, `client error: ${s.code}`);
  // Only when nothing of a response has been written on this socket yet.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && inFlight?.headersSent !== true) {
    const body = JSON.stringify({ error: { code: s.code, message: s.message } });
    socket.end(
      `HTTP/1.1 ${s.status} ${s.reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    // A peer that keeps its side open (a slowloris does) is not waited for.
    setTimeout(() => socket.destroy(), 1000).unref();
  } else socket.destroy();
}

/** The Fastify options that apply these limits. */
export function connectionOptions(t: Partial<ConnectionTimeouts> = {}): {
  requestTimeout: number;
  keepAliveTimeout: number;
  http: ServerOptions;
  clientErrorHandler: typeof clientErrorHandler;
} {
  const v = { ...DEFAULT_TIMEOUTS, ...t };
  const requestMs = Math.max(v.requestMs, v.headersMs);
  return {
    requestTimeout: requestMs,
    keepAliveTimeout: v.keepAliveMs,
    http: {
      headersTimeout: v.headersMs,
      requestTimeout: requestMs,
      connectionsCheckingInterval: v.checkIntervalMs,
      // Node would answer a missing Host with an empty 400; Fastify routes it (nothing here depends on Host).
      requireHostHeader: false,
    },
    clientErrorHandler,
  };
}
