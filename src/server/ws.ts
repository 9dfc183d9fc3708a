// The WebSocket API of SPEC §3 at `/api/ws`: one socket starts runs, cancels and
// interrupts them, and follows the event streams of many tasks at once.
//
// Auth: the upgrade request goes through the same `onRequest` auth hook as HTTP, so
// a bad or missing key is refused with HTTP 401 before any upgrade. Browsers can't
// set headers on a WebSocket, so the key may also come (first match wins):
//   1. `Authorization: Bearer <key>` (non-browser clients);
//   2. `?api_key=<key>` (removed from the URL before anything logs it);
//   3. a subprotocol `bearer.<key>` in `Sec-WebSocket-Protocol`; offer
//      `['leash.v1', 'bearer.<key>']` and the server selects `leash.v1`, so the key
//      is not echoed back (the key must then be a valid header token).
//
// Client → server frames (JSON text): `run` (a task, or a message in a thread),
// `cancel`, `interrupt` (cancel with reason `interrupted`, by task or by thread),
// `subscribe` / `unsubscribe`, `ping`. Server → client: `ack`, `event`,
// `cancel_ack`, `error`, `pong`. Frames of one socket are handled in the order they
// arrive (a `cancel` after a `run` sees that run), except that a `cancel` naming by its
// `request_id` a run still being created is taken as it arrives, so that run is stopped
// before its handler starts; events of a task are sent in seq order without gaps (seqs
// skip only where a crash lost events: recovery writes above them), but their order
// relative to acks of other frames is not fixed.
//
// Closing a socket cancels only the tasks it started with `on_disconnect: "cancel"`
// (reason `disconnect`); the default for WebSocket runs is `continue`: reconnect
// and `subscribe` with `after` to pick up where you were. Not a disconnect: the
// server closing a socket because it shuts down (1001) or because the client reads
// too slowly (1013).
//
// Memory per socket is bounded: frames larger than `maxPayload` close it with 1009;
// while more than `maxBufferedBytes` wait to be sent it is closed with 1013 (resume
// with `subscribe` `after=<last seq received>`); past a few dozen unanswered frames
// the server stops reading from it until it has caught up. A protocol-level ping
// every `heartbeatMs`; a socket that did not answer the previous one is dropped.

import type { IncomingMessage } from 'node:http';
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import { LeashError } from '../core/errors.ts';
import { WORKERS_CONNECT_PATH } from './workers/protocol.ts';
import { handshakeProblem, promoteWsCredentials, selectProtocol, upgradeRequired, WS_PATH } from './ws/handshake.ts';
import {
  DEFAULT_WS_HEARTBEAT_MS,
  DEFAULT_WS_MAX_BUFFERED,
  DEFAULT_WS_MAX_PAYLOAD,
  DEFAULT_WS_MAX_SUBSCRIPTIONS,
  type WebSocketDeps,
  type WebSocketOptions,
} from './ws/options.ts';
import { WsSession } from './ws/session.ts';

export { promoteWsCredentials, stripApiKey, upgradeRequired, WS_PATH, WS_SUBPROTOCOL } from './ws/handshake.ts';
export * from './ws/options.ts';

// ── registration ──────────────────────────────────────────────────────────
export function registerWebSocket(app: FastifyInstance, deps: WebSocketDeps, opts: WebSocketOptions = {}): void {
  const settings: Required<WebSocketOptions> = {
    maxPayload: opts.maxPayload ?? DEFAULT_WS_MAX_PAYLOAD,
    maxBufferedBytes: opts.maxBufferedBytes ?? DEFAULT_WS_MAX_BUFFERED,
    heartbeatMs: opts.heartbeatMs ?? DEFAULT_WS_HEARTBEAT_MS,
    maxSubscriptions: opts.maxSubscriptions ?? DEFAULT_WS_MAX_SUBSCRIPTIONS,
  };
  // Before @fastify/websocket's own 'upgrade' listener, which routes the request (and so runs auth).
  const upgrades = new WeakSet<IncomingMessage>();
  app.server.prependListener('upgrade', (req: IncomingMessage) => {
    upgrades.add(req);
    promoteWsCredentials(req);
  });
  // An upgrade answered with plain HTTP (401, 404) must not leave its socket open.
  // The plugin destroys it only when its own onRequest hook ran, and the auth hook,
  // registered earlier, throws before that.
  app.addHook('onResponse', async (request) => {
    if (upgrades.has(request.raw)) request.raw.socket.destroy();
  });
  // The plugin hands every upgrade to `ws`, whatever the route, and `ws` answers a
  // malformed handshake itself in plain text. Answer those first, in leash's JSON.
  app.addHook('preValidation', async (request) => {
    if (!upgrades.has(request.raw)) return;
    if (request.routeOptions.url !== WS_PATH && request.routeOptions.url !== WORKERS_CONNECT_PATH) {
      throw new LeashError('not_found', `No WebSocket endpoint at ${request.url}: connect to ${WS_PATH}.`);
    }
    const problem = handshakeProblem(request.raw);
    if (problem) throw new LeashError('invalid_request', `Invalid WebSocket handshake: ${problem}.`);
    // A socket is an open stream like any other: counted per owner until it closes.
    const release = deps.streams.acquire(request.owner);
    request.raw.socket.once('close', release);
  });

  app.register(websocket, {
    options: { maxPayload: settings.maxPayload, handleProtocols: selectProtocol },
    // Protocol errors (oversized or invalid frames) are the client's: `ws` has
    // already closed the socket with the right code; terminating here would cut
    // that close frame off.
    errorHandler: (err, socket, request) => {
      request.log.debug({ err }, 'websocket error');
      if (socket.readyState === socket.OPEN) socket.terminate();
    },
  });
  // Registered after the plugin (in its own scope) so the plugin's route hook sees the route.
  app.register(async (scope) => {
    scope.route({
      method: 'GET',
      url: WS_PATH,
      handler: upgradeRequired(WS_PATH),
      wsHandler: (socket, request) => {
        new WsSession(socket, request, deps, settings).start();
      },
    });
  });
}
