// `GET /api/workers/connect` (WebSocket): one socket per worker process, and
// `GET /api/workers`: the caller's connected workers. The upgrade goes through the
// same auth hook as every route (the Bearer key names the owner whose tasks the
// worker sees) and the same handshake checks and per-owner stream cap as /api/ws.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { upgradeRequired } from '../ws.ts';
import type { RawData, WebSocket } from 'ws';
import { toErrorResponse, zodDetails } from '../errors.ts';
import { LeashError } from '../../core/errors.ts';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../json-depth.ts';
import { RateCounter } from '../rate-limit.ts';
import type { WorkerHub, WorkerRecord } from './hub.ts';
import { WORKERS_CONNECT_PATH, workerFrame, type ServerFrame } from './protocol.ts';

/** Close codes: the worker sent no valid hello in time, its hello was refused, or it is over the rate limit. */
export const WS_CLOSE_NO_HELLO = 4408;
export const WS_CLOSE_REFUSED = 4409;
export const WS_CLOSE_RATE_LIMITED = 4429;
const HELLO_TIMEOUT_MS = 10_000;

/**
 * `rateCounter`: the per-owner budget (LEASH_RATE_LIMIT) that HTTP requests and /api/ws
 * frames spend; every worker frame but ping/pong spends it too.
 */
export function registerWorkerRoutes(app: FastifyInstance, hub: WorkerHub, rateCounter: RateCounter | null): void {
  app.get('/api/workers', async (request) => ({ data: hub.list(request.owner) }));
  app.register(async (scope) => {
    scope.route({
      method: 'GET',
      url: WORKERS_CONNECT_PATH,
      handler: upgradeRequired(WORKERS_CONNECT_PATH),
      wsHandler: (socket, request) => session(socket, request, hub, rateCounter),
    });
  });
}

function session(socket: WebSocket, request: FastifyRequest, hub: WorkerHub, rateCounter: RateCounter | null): void {
  const owner = request.owner;
  let worker: WorkerRecord | null = null;
  let limited = false;
  // Frames of one socket are handled in order (a checkpoint's ack before the finish after it).
  let chain: Promise<void> = Promise.resolve();
  const send = (frame: ServerFrame): void => {
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(frame));
  };
  const link = { send, terminate: () => socket.terminate() };
  const helloTimer = setTimeout(() => {
    if (worker === null) socket.close(WS_CLOSE_NO_HELLO, 'no hello');
  }, HELLO_TIMEOUT_MS);
  const sendError = (e: unknown, extra: { attempt?: string; id?: string } = {}): void => {
    const { body } = toErrorResponse(e);
    send({ type: 'error', ...extra, error: body.error });
  };

  socket.on('message', (raw: RawData, isBinary: boolean) => {
    if (limited) return;
    if (worker) hub.seen(worker);
    if (rateCounter !== null && !isLiveness(raw, isBinary)) {
      const { current, ttl } = rateCounter.hit(RateCounter.ownerKey(owner));
      if (current > rateCounter.max) {
        // Over the budget: this frame is not applied. No `id` in the error, so the SDK keeps
        // what it sent unacknowledged and sends it again after it reconnects (past retry_after_s);
        // its attempts are kept if it is back within its lease.
        limited = true;
        const retry = Math.ceil(ttl / 1000);
        sendError(
          new LeashError(
            'rate_limited',
            `Too many frames: this API key may send ${rateCounter.max} requests or frames per ${Math.round(rateCounter.windowMs / 1000)} s (LEASH_RATE_LIMIT). Reconnect in ${retry} s.`,
            { details: { limit: rateCounter.max, retry_after_s: retry } },
          ),
        );
        socket.close(WS_CLOSE_RATE_LIMITED, 'rate limited');
        return;
      }
    }
    chain = chain
      .then(() => handle(raw, isBinary))
      .catch((e: unknown) => {
        request.log.warn({ err: e }, 'worker frame failed');
        sendError(e);
      });
  });
  socket.on('close', () => {
    clearTimeout(helloTimer);
    if (worker) hub.disconnected(worker);
  });

  async function handle(raw: RawData, isBinary: boolean): Promise<void> {
    if (limited) return; // frames queued before the limit was hit are not applied either
    if (isBinary) throw new LeashError('invalid_request', 'Frames are JSON text.');
    const text = raw.toString();
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
      throw new LeashError('invalid_request', `The frame nests deeper than ${MAX_JSON_DEPTH} levels.`);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new LeashError('invalid_json', 'The frame is not valid JSON.');
    }
    const parsed = workerFrame.safeParse(value);
    if (!parsed.success) {
      const echo = value as { attempt?: unknown; id?: unknown } | null;
      sendError(
        new LeashError('invalid_request', 'Invalid frame.', {
          details: zodDetails(parsed.error).slice(0, 20),
        }),
        {
          ...(typeof echo?.attempt === 'string' && { attempt: echo.attempt.slice(0, 64) }),
          ...(typeof echo?.id === 'string' && { id: echo.id.slice(0, 64) }),
        },
      );
      return;
    }
    const f = parsed.data;
    if (f.type === 'ping') return send({ type: 'pong' });
    if (f.type === 'pong') return;
    if (f.type === 'hello') {
      if (worker) throw new LeashError('invalid_request', 'hello was already sent on this socket.');
      let r: Awaited<ReturnType<WorkerHub['connect']>>;
      try {
        r = await hub.connect(owner, f, link);
      } catch (e) {
        sendError(e);
        socket.close(WS_CLOSE_REFUSED, 'hello refused');
        return;
      }
      worker = r.worker;
      clearTimeout(helloTimer);
      send({
        type: 'welcome',
        worker_id: worker.id,
        ping_ms: hub.pingMs,
        lease_ms: hub.leaseMs,
        accept_ms: hub.acceptMs,
        kept: r.kept,
      });
      hub.afterWelcome(worker, r.unknown);
      return;
    }
    if (!worker) throw new LeashError('invalid_request', 'Send hello first.');
    switch (f.type) {
      case 'accept':
        return hub.accept(worker, f.attempt, f.fence);
      case 'event':
        return hub.event(worker, f);
      case 'finish':
        return hub.finish(worker, f);
      case 'cancel_ack':
        return hub.cancelAck(worker, f.attempt);
      case 'drain':
        return hub.drain(worker);
    }
  }
}

/** Pings and pongs keep a worker alive and spend no budget (a ping every few seconds is not a flood). */
function isLiveness(raw: RawData, isBinary: boolean): boolean {
  if (isBinary || !Buffer.isBuffer(raw) || raw.length > 40) return false;
  const text = raw.toString().replace(/\s+/g, '');
  return text === '{"type":"ping"}' || text === '{"type":"pong"}';
}
