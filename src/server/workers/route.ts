// `GET /api/workers/connect` (WebSocket): one socket per worker process, and
// `GET /api/workers`: the caller's connected workers. The upgrade goes through the
// same auth hook as every route (the Bearer key names the owner whose tasks the
// worker sees) and the same handshake checks and per-owner stream cap as /api/ws.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { upgradeRequired } from '../ws.ts';
import type { RawData, WebSocket } from 'ws';
import { toErrorResponse } from '../errors.ts';
import { LeashError } from '../../core/errors.ts';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../json-depth.ts';
import type { WorkerHub, WorkerRecord } from './hub.ts';
import { WORKERS_CONNECT_PATH, workerFrame, type ServerFrame } from './protocol.ts';

/** Close codes: the worker sent no valid hello in time, or its hello was refused. */
export const WS_CLOSE_NO_HELLO = 4408;
export const WS_CLOSE_REFUSED = 4409;
const HELLO_TIMEOUT_MS = 10_000;

export function registerWorkerRoutes(app: FastifyInstance, hub: WorkerHub): void {
  app.get('/api/workers', async (request) => ({ data: hub.list(request.owner) }));
  app.register(async (scope) => {
    scope.route({
      method: 'GET',
      url: WORKERS_CONNECT_PATH,
      handler: upgradeRequired(WORKERS_CONNECT_PATH),
      wsHandler: (socket, request) => session(socket, request, hub),
    });
  });
}

function session(socket: WebSocket, request: FastifyRequest, hub: WorkerHub): void {
  const owner = request.owner;
  let worker: WorkerRecord | null = null;
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
    if (worker) hub.seen(worker);
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
          details: parsed.error.issues.slice(0, 20).map((i) => ({ path: i.path.join('.'), message: i.message })),
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
      let r: ReturnType<WorkerHub['connect']>;
      try {
        r = hub.connect(owner, f, link);
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
