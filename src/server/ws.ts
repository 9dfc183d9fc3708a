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
// arrive (a `cancel` after a `run` sees that run); events of a task are sent in seq
// order without gaps (seqs skip only where a crash lost events: recovery writes above
// them), but their order relative to acks of other frames is not fixed.
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
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import { LeashError } from '../runtime/errors.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { CancelReason, Task } from '../runtime/types.ts';
import { CANCEL_REASONS } from '../runtime/types.ts';
import { MULTITASK_STRATEGIES } from '../threads/threads.ts';
import type { Threads } from '../threads/threads.ts';
import { parseOrThrow, toErrorResponse } from './errors.ts';
import { deadlineMsField, onDisconnectField, threadIdField } from './schemas.ts';
import { MAX_MESSAGE_CHARS } from './routes/threads.ts';
import { MAX_JSON_DEPTH, jsonDepthExceeds } from './json-depth.ts';

export const WS_PATH = '/api/ws';
/** The subprotocol the server selects when the client offers it (next to `bearer.<key>`). */
export const WS_SUBPROTOCOL = 'leash.v1';
export const DEFAULT_WS_MAX_PAYLOAD = 1024 * 1024;
export const DEFAULT_WS_MAX_BUFFERED = 4 * 1024 * 1024;
export const DEFAULT_WS_HEARTBEAT_MS = 30_000;
export const DEFAULT_WS_MAX_SUBSCRIPTIONS = 256;

export const WS_CLOSE_GOING_AWAY = 1001;
export const WS_CLOSE_TOO_BIG = 1009;
export const WS_CLOSE_TRY_AGAIN_LATER = 1013;

/** Frames waiting to be handled before the server stops reading the socket, and when it reads again. */
const MAX_PENDING_FRAMES = 32;
const RESUME_PENDING_FRAMES = 8;

export interface WebSocketDeps {
  runtime: Runtime;
  threads: Threads;
  /** Aborts when the server closes: every socket is closed with 1001. */
  closing: AbortSignal;
}

export interface WebSocketOptions {
  /** Largest accepted frame in bytes; a larger one closes the socket with 1009. */
  maxPayload?: number;
  /** Outgoing bytes a socket may have waiting; past it the socket is closed with 1013. */
  maxBufferedBytes?: number;
  /** Protocol-level ping interval (ms). */
  heartbeatMs?: number;
  /** Tasks one socket may follow at once. */
  maxSubscriptions?: number;
}

// ── frames ────────────────────────────────────────────────────────────────
const requestId = z.union([z.string().min(1).max(128), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)]);
const taskId = z.string().min(1).max(128);
const threadId = threadIdField;
const onDisconnect = onDisconnectField;
const deadlineMs = deadlineMsField;

const runTaskFrame = z.strictObject({
  type: z.literal('run'),
  request_id: requestId,
  task: z.strictObject({
    type: z.string().min(1).max(64),
    input: z.unknown().optional(),
    priority: z.number().int().min(-100).max(100).optional(),
    deadline_ms: deadlineMs.optional(),
    thread_id: threadId.nullable().optional(),
    on_disconnect: onDisconnect.optional(),
  }),
  on_disconnect: onDisconnect.optional(),
});

const runThreadFrame = z.strictObject({
  type: z.literal('run'),
  request_id: requestId,
  thread_id: threadId,
  content: z.string().min(1, 'must not be empty').max(MAX_MESSAGE_CHARS),
  model: z.string().min(1).max(200).optional(),
  multitask: z.enum(MULTITASK_STRATEGIES).optional(),
  system: z.string().max(100_000).optional(),
  deadline_ms: deadlineMs.optional(),
  on_disconnect: onDisconnect.optional(),
});

const cancelFrame = z.strictObject({
  type: z.literal('cancel'),
  request_id: requestId.optional(),
  task_id: taskId,
  reason: z.enum(CANCEL_REASONS).optional(),
});

const interruptFrame = z
  .strictObject({
    type: z.literal('interrupt'),
    request_id: requestId.optional(),
    task_id: taskId.optional(),
    thread_id: threadId.optional(),
  })
  .refine((f) => (f.task_id === undefined) !== (f.thread_id === undefined), {
    message: 'give exactly one of task_id or thread_id',
  });

const subscribeFrame = z.strictObject({
  type: z.literal('subscribe'),
  request_id: requestId.optional(),
  task_id: taskId,
  after: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});

const unsubscribeFrame = z.strictObject({
  type: z.literal('unsubscribe'),
  request_id: requestId.optional(),
  task_id: taskId,
});

// Loose on purpose: clients often put a timestamp in their pings.
const pingFrame = z.object({ type: z.literal('ping'), request_id: requestId.optional() });

const FRAME_TYPES = ['run', 'cancel', 'interrupt', 'subscribe', 'unsubscribe', 'ping'] as const;
type FrameType = (typeof FRAME_TYPES)[number];
type RequestId = z.output<typeof requestId>;

/** Codes only the WebSocket API uses (HTTP maps unknown codes to 500, so they are passed as they are). */
const WS_CODES: ReadonlySet<string> = new Set(['invalid_frame', 'too_many_subscriptions']);

// ── auth helpers ──────────────────────────────────────────────────────────
/**
 * Browsers can't send `Authorization` on a WebSocket: for the upgrade to `/api/ws`
 * only, a key from `?api_key=` or a `bearer.<key>` subprotocol becomes that header,
 * so the one auth hook checks every request the same way. The query key is removed
 * from the URL so it never reaches a log line.
 */
export function promoteWsCredentials(req: IncomingMessage): void {
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path !== WS_PATH) return;
  let key: string | undefined;
  if (q !== -1) {
    const params = new URLSearchParams(url.slice(q + 1));
    const fromQuery = params.get('api_key');
    if (fromQuery !== null) {
      key = fromQuery;
      params.delete('api_key');
      const rest = params.toString();
      req.url = rest === '' ? path : `${path}?${rest}`;
    }
  }
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
function selectProtocol(protocols: Set<string>): string | false {
  if (protocols.has(WS_SUBPROTOCOL)) return WS_SUBPROTOCOL;
  for (const p of protocols) if (!p.startsWith('bearer.')) return p;
  for (const p of protocols) return p;
  return false;
}

/** What `ws` would refuse in an upgrade request (RFC 6455 §4.2.1), or null. */
function handshakeProblem(req: IncomingMessage): string | null {
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !/^[+/0-9A-Za-z]{22}==$/.test(key.trim()))
    return 'missing or invalid Sec-WebSocket-Key header';
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') return 'Sec-WebSocket-Version must be 13';
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') return 'Upgrade header must be "websocket"';
  return null;
}

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
    if (request.routeOptions.url !== WS_PATH) {
      throw new LeashError('not_found', `No WebSocket endpoint at ${request.url}: connect to ${WS_PATH}.`);
    }
    const problem = handshakeProblem(request.raw);
    if (problem) throw new LeashError('invalid_request', `Invalid WebSocket handshake: ${problem}.`);
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
      handler: async (_request, reply) =>
        reply
          .code(426)
          .header('upgrade', 'websocket')
          .send({
            error: { code: 'upgrade_required', message: `${WS_PATH} speaks WebSocket: send an upgrade request` },
          }),
      wsHandler: (socket, request) => {
        new WsSession(socket, request, deps, settings).start();
      },
    });
  });
}

// ── one socket ────────────────────────────────────────────────────────────
class WsSession {
  readonly #socket: WebSocket;
  readonly #owner: string;
  readonly #log: FastifyBaseLogger;
  readonly #deps: WebSocketDeps;
  readonly #opts: Required<WebSocketOptions>;
  /** task id → the abort of its event loop. */
  readonly #subs = new Map<string, AbortController>();
  /** Tasks this socket started with on_disconnect "cancel". */
  readonly #cancelOnClose = new Set<string>();
  #queue: Promise<void> = Promise.resolve();
  #pending = 0;
  #alive = true;
  #closed = false;
  /** Closed by the server for a reason that is not the client going away (shutdown, too slow). */
  #serverClosed = false;
  #heartbeat: NodeJS.Timeout | null = null;

  constructor(socket: WebSocket, request: FastifyRequest, deps: WebSocketDeps, opts: Required<WebSocketOptions>) {
    this.#socket = socket;
    this.#owner = request.owner;
    this.#log = request.log.child({ ws: true });
    this.#deps = deps;
    this.#opts = opts;
  }

  /** Listeners are attached synchronously: frames sent right after the handshake are not lost. */
  start(): void {
    const socket = this.#socket;
    socket.on('message', (data, isBinary) => this.#enqueue(data, isBinary));
    socket.on('pong', () => {
      this.#alive = true;
    });
    socket.on('close', (code) => this.#onClose(code));
    const onClosing = (): void => this.#closeByServer(WS_CLOSE_GOING_AWAY, 'server shutting down');
    if (this.#deps.closing.aborted) onClosing();
    else {
      this.#deps.closing.addEventListener('abort', onClosing, { once: true });
      socket.once('close', () => this.#deps.closing.removeEventListener('abort', onClosing));
    }
    this.#heartbeat = setInterval(() => {
      if (!this.#alive) {
        this.#log.info('websocket did not answer a ping: dropped');
        socket.terminate();
        return;
      }
      this.#alive = false;
      socket.ping();
    }, this.#opts.heartbeatMs);
    this.#heartbeat.unref();
    this.#log.debug({ owner: this.#owner }, 'websocket open');
  }

  // ── inbound ─────────────────────────────────────────────────────────────
  #enqueue(data: RawData, isBinary: boolean): void {
    this.#pending++;
    // Backpressure on input: a client that floods frames is simply read more slowly.
    if (this.#pending >= MAX_PENDING_FRAMES && !this.#socket.isPaused) this.#socket.pause();
    this.#queue = this.#queue
      .then(() => this.#handle(data, isBinary))
      .catch((err: unknown) => this.#log.error({ err }, 'websocket frame handling failed'))
      .finally(() => {
        this.#pending--;
        if (this.#pending <= RESUME_PENDING_FRAMES && this.#socket.isPaused) this.#socket.resume();
      });
  }

  /** Never throws: every failure becomes an `error` frame. Frames still queued when the socket closes are handled. */
  async #handle(data: RawData, isBinary: boolean): Promise<void> {
    if (isBinary) {
      this.#sendError(
        undefined,
        new LeashError('invalid_frame', 'Binary frames are not supported: send JSON text frames.'),
      );
      return;
    }
    let msg: unknown;
    const text = toBuffer(data).toString('utf8');
    if (jsonDepthExceeds(text)) {
      // Same bound as HTTP bodies: what comes after parsing recurses and would overflow.
      this.#sendError(
        undefined,
        new LeashError('invalid_frame', `The frame nests deeper than ${MAX_JSON_DEPTH} levels.`),
      );
      return;
    }
    try {
      msg = JSON.parse(text);
    } catch {
      this.#sendError(undefined, new LeashError('invalid_frame', 'The frame is not valid JSON.'));
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      this.#sendError(undefined, new LeashError('invalid_frame', 'A frame must be a JSON object with a "type".'));
      return;
    }
    const rec = msg as Record<string, unknown>;
    const rid = requestId.safeParse(rec.request_id);
    const reqId = rid.success ? rid.data : undefined;
    const named = typeof rec.task_id === 'string' ? rec.task_id : undefined;
    const type = rec.type;
    if (typeof type !== 'string' || !(FRAME_TYPES as readonly string[]).includes(type)) {
      const what = typeof type === 'string' ? `Unknown frame type "${type.slice(0, 64)}"` : 'The frame has no "type"';
      this.#sendError(reqId, new LeashError('invalid_frame', `${what}; expected one of ${FRAME_TYPES.join(', ')}.`));
      return;
    }
    try {
      await this.#dispatch(type as FrameType, rec);
    } catch (err) {
      this.#sendError(reqId, err, named);
    }
  }

  async #dispatch(type: FrameType, frame: Record<string, unknown>): Promise<void> {
    switch (type) {
      case 'run':
        return 'task' in frame ? this.#runTask(frame) : this.#runThread(frame);
      case 'cancel': {
        const f = parseOrThrow(cancelFrame, frame, 'cancel frame');
        return this.#cancel(f.request_id, f.task_id, f.reason ?? 'user');
      }
      case 'interrupt': {
        const f = parseOrThrow(interruptFrame, frame, 'interrupt frame');
        if (f.task_id !== undefined) return this.#cancel(f.request_id, f.task_id, 'interrupted');
        return this.#interruptThread(f.request_id, f.thread_id!);
      }
      case 'subscribe': {
        const f = parseOrThrow(subscribeFrame, frame, 'subscribe frame');
        const task = await this.#deps.runtime.get(f.task_id, this.#owner);
        if (task === null) throw new LeashError('not_found', `Task ${f.task_id} not found.`);
        if (!this.#subs.has(task.id)) this.#checkSubscriptionRoom();
        if (f.request_id !== undefined) this.#send({ type: 'ack', request_id: f.request_id, task_id: task.id });
        this.#follow(task.id, f.after ?? 0);
        return;
      }
      case 'unsubscribe': {
        const f = parseOrThrow(unsubscribeFrame, frame, 'unsubscribe frame');
        this.#subs.get(f.task_id)?.abort();
        this.#subs.delete(f.task_id);
        if (f.request_id !== undefined) this.#send({ type: 'ack', request_id: f.request_id, task_id: f.task_id });
        return;
      }
      case 'ping': {
        const f = parseOrThrow(pingFrame, frame, 'ping frame');
        this.#send(f.request_id === undefined ? { type: 'pong' } : { type: 'pong', request_id: f.request_id });
        return;
      }
    }
  }

  async #runTask(frame: Record<string, unknown>): Promise<void> {
    const f = parseOrThrow(runTaskFrame, frame, 'run frame');
    const t = f.task;
    this.#checkSubscriptionRoom();
    if (f.on_disconnect !== undefined && t.on_disconnect !== undefined && f.on_disconnect !== t.on_disconnect) {
      throw new LeashError('invalid_request', 'on_disconnect is given twice with different values.', {
        details: [{ path: 'task.on_disconnect', message: 'differs from on_disconnect' }],
      });
    }
    const { task } = await this.#deps.runtime.create(this.#owner, {
      type: t.type,
      input: t.input === undefined ? {} : t.input,
      ...(t.priority !== undefined && { priority: t.priority }),
      ...(t.deadline_ms !== undefined && { deadline_ms: t.deadline_ms }),
      ...(t.thread_id !== undefined && { thread_id: t.thread_id }),
    });
    await this.#started(f.request_id, task, f.on_disconnect ?? t.on_disconnect ?? 'continue', {});
  }

  async #runThread(frame: Record<string, unknown>): Promise<void> {
    const f = parseOrThrow(runThreadFrame, frame, 'run frame');
    this.#checkSubscriptionRoom();
    const run = await this.#deps.threads.run(f.thread_id, this.#owner, {
      content: f.content,
      ...(f.model !== undefined && { model: f.model }),
      ...(f.multitask !== undefined && { multitask: f.multitask }),
      ...(f.system !== undefined && { system: f.system }),
      ...(f.deadline_ms !== undefined && { deadline_ms: f.deadline_ms }),
    });
    await this.#started(f.request_id, run.task, f.on_disconnect ?? 'continue', {
      thread_id: f.thread_id,
      user_message_id: run.user_message.id,
      assistant_message_id: run.assistant_message.id,
      cancelled_task_ids: run.cancelled_task_ids,
    });
  }

  /** Checked before a run is created, so a refused run never starts. */
  #checkSubscriptionRoom(): void {
    if (this.#subs.size < this.#opts.maxSubscriptions) return;
    throw new LeashError(
      'too_many_subscriptions',
      `This socket already follows ${this.#subs.size} tasks (limit ${this.#opts.maxSubscriptions}); unsubscribe from some first.`,
    );
  }

  /** A run exists: ack it and follow its events from the start. */
  async #started(
    reqId: RequestId,
    task: Task,
    onDisc: 'cancel' | 'continue',
    extra: Record<string, unknown>,
  ): Promise<void> {
    if (onDisc === 'cancel') {
      // The client left while the run was being created: it asked for it not to outlive the socket.
      if (this.#closed && !this.#serverClosed) {
        await this.#cancelForDisconnect(task.id);
        return;
      }
      this.#cancelOnClose.add(task.id);
    }
    this.#send({ type: 'ack', request_id: reqId, task_id: task.id, ...extra });
    this.#follow(task.id, 0);
  }

  async #cancel(reqId: RequestId | undefined, id: string, reason: CancelReason): Promise<void> {
    const { task } = await this.#deps.runtime.cancel(id, this.#owner, reason);
    this.#send({ type: 'cancel_ack', request_id: reqId, task_id: task.id, status: task.status });
  }

  /** Interrupts every active run of the thread: one cancel_ack each, or one with task_id null when it was idle. */
  async #interruptThread(reqId: RequestId | undefined, id: string): Promise<void> {
    const stopped = await this.#deps.threads.interrupt(id, this.#owner);
    for (const task of stopped) {
      this.#send({ type: 'cancel_ack', request_id: reqId, thread_id: id, task_id: task.id, status: task.status });
    }
    if (stopped.length === 0)
      this.#send({ type: 'cancel_ack', request_id: reqId, thread_id: id, task_id: null, status: null });
  }

  // ── outbound ────────────────────────────────────────────────────────────
  /** Follows one task's events (replacing an earlier subscription to it) until its terminal event. */
  #follow(id: string, after: number): void {
    this.#subs.get(id)?.abort();
    const ac = new AbortController();
    this.#subs.set(id, ac);
    void (async () => {
      try {
        for await (const e of this.#deps.runtime.events(id, { after, signal: ac.signal })) {
          if (ac.signal.aborted) return;
          if (!this.#send({ type: 'event', task_id: e.task_id, seq: e.seq, event: e.type, data: e.data })) return;
        }
      } catch (err) {
        if (ac.signal.aborted || this.#closed) return;
        this.#log.error({ err, task_id: id }, 'websocket event stream failed');
        this.#sendError(undefined, err, id);
      } finally {
        if (this.#subs.get(id) === ac) this.#subs.delete(id);
      }
    })();
  }

  /** False when the frame could not be sent (socket closing, or closed now for being too slow). */
  #send(frame: Record<string, unknown>): boolean {
    const socket = this.#socket;
    if (this.#closed || socket.readyState !== socket.OPEN) return false;
    if (socket.bufferedAmount > this.#opts.maxBufferedBytes) {
      this.#log.warn({ buffered: socket.bufferedAmount }, 'websocket client reads too slowly: closed');
      this.#closeByServer(WS_CLOSE_TRY_AGAIN_LATER, 'client too slow: reconnect and subscribe with after=<last seq>');
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  }

  #sendError(reqId: RequestId | undefined, err: unknown, named?: string): void {
    let error: { code: string; message: string; details?: unknown };
    if (err instanceof LeashError && WS_CODES.has(err.code)) error = err.toJSON();
    else {
      const r = toErrorResponse(err);
      if (r.internal) this.#log.error({ err }, 'websocket request failed');
      error = r.body.error;
    }
    this.#send({
      type: 'error',
      ...(reqId !== undefined && { request_id: reqId }),
      ...(named !== undefined && { task_id: named }),
      error,
    });
  }

  #closeByServer(code: number, reason: string): void {
    if (this.#closed || this.#serverClosed) return;
    this.#serverClosed = true;
    this.#socket.close(code, reason);
    // Nothing more is sent once the close frame is queued.
    for (const ac of this.#subs.values()) ac.abort();
    this.#subs.clear();
  }

  #onClose(code: number): void {
    this.#closed = true;
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    for (const ac of this.#subs.values()) ac.abort();
    this.#subs.clear();
    this.#log.debug({ code }, 'websocket closed');
    if (this.#serverClosed || this.#deps.closing.aborted) return;
    for (const id of this.#cancelOnClose) void this.#cancelForDisconnect(id);
    this.#cancelOnClose.clear();
  }

  async #cancelForDisconnect(id: string): Promise<void> {
    try {
      await this.#deps.runtime.cancel(id, this.#owner, 'disconnect');
    } catch (err) {
      if (!LeashError.is(err, 'task_ended') && !LeashError.is(err, 'not_found')) {
        this.#log.warn({ err, task_id: id }, 'cancel on websocket disconnect failed');
      }
    }
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
