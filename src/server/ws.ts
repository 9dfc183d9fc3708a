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
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import { LeashError } from '../core/errors.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { CancelReason, Task } from '../core/types.ts';
import { CANCEL_REASONS } from '../core/types.ts';
import { MULTITASK_STRATEGIES } from '../threads/threads.ts';
import type { Threads } from '../threads/threads.ts';
import { parseOrThrow, toErrorResponse } from './errors.ts';
import { deadlineMsField, onDisconnectField, threadIdField } from './schemas.ts';
import { MAX_MESSAGE_CHARS } from './routes/threads.ts';
import { MAX_JSON_DEPTH, jsonDepthExceeds } from './json-depth.ts';
import { RateCounter } from './rate-limit.ts';
import { cancelForDisconnect } from './cancel-on-disconnect.ts';
import { WORKERS_CONNECT_PATH } from './workers/protocol.ts';
import type { StreamCaps } from './stream-caps.ts';

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
  /** Per-owner cap on open streams; a socket holds one slot. */
  streams: StreamCaps;
  /** The per-owner request budget (LEASH_RATE_LIMIT), which every frame also spends; null = no limit. */
  rateCounter: RateCounter | null;
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

// By task_id, or by the request_id of a run of this socket (SPEC §3): sent right after
// the run, before its ack, it stops that run.
const cancelFrame = z
  .strictObject({
    type: z.literal('cancel'),
    request_id: requestId.optional(),
    task_id: taskId.optional(),
    reason: z.enum(CANCEL_REASONS).optional(),
  })
  .refine((f) => f.task_id !== undefined || f.request_id !== undefined, {
    message: 'give task_id, or the request_id of a run of this socket',
  });

/** Runs remembered per socket for cancel by request_id (the oldest are forgotten first). */
const MAX_REMEMBERED_RUNS = 1000;
/** Frames up to this size are looked at on arrival (a `run`'s request_id, an early `cancel`). */
const PEEK_MAX_BYTES = 16 * 1024;

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

/** The plain-HTTP answer of a WebSocket endpoint: 426 naming the path. */
export function upgradeRequired(path: string): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> {
  return async (_request, reply) =>
    reply
      .code(426)
      .header('upgrade', 'websocket')
      .send({ error: { code: 'upgrade_required', message: `${path} speaks WebSocket: send an upgrade request` } });
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
  /** request_id of this socket's runs → their task id, or null while the run is being created. */
  readonly #runs = new Map<RequestId, string | null>();
  /** Cancels by request_id that came while their run was being created: applied once its task exists. */
  readonly #earlyCancels = new Map<RequestId, CancelReason>();
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
    if (!isBinary && this.#onArrival(data)) return;
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

  /**
   * Looks at a small frame as it arrives, before the frames queued ahead of it are
   * handled: a `run` marks its request_id as being created, and a `cancel` by the
   * request_id of such a run is taken now (returns true: not queued) — the run is
   * cancelled, and the cancel acknowledged, the moment its task exists. Anything else
   * waits its turn in the queue.
   */
  #onArrival(data: RawData): boolean {
    const buf = toBuffer(data);
    if (buf.length > PEEK_MAX_BYTES) return false;
    const text = buf.toString('utf8');
    // Refused frames are left to #handle, which answers them in order.
    if (jsonDepthExceeds(text)) return false;
    let rec: unknown;
    try {
      rec = JSON.parse(text);
    } catch {
      return false;
    }
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) return false;
    const f = rec as Record<string, unknown>;
    const rid = requestId.safeParse(f.request_id);
    if (!rid.success) return false;
    if (f.type === 'run') {
      this.#rememberRun(rid.data, null);
      return false;
    }
    if (f.type !== 'cancel' || f.task_id !== undefined || this.#runs.get(rid.data) !== null) return false;
    const c = cancelFrame.safeParse(f);
    if (!c.success) return false;
    this.#earlyCancels.set(rid.data, c.data.reason ?? 'user');
    return true;
  }

  #rememberRun(reqId: RequestId, taskId: string | null): void {
    this.#runs.delete(reqId); // a reused request_id names its latest run
    this.#runs.set(reqId, taskId);
    while (this.#runs.size > MAX_REMEMBERED_RUNS) this.#runs.delete(this.#runs.keys().next().value!);
  }

  /** A run that failed before its task existed: nothing to cancel (its error frame answers an early cancel too). */
  #forgetRun(reqId: RequestId): void {
    if (this.#runs.get(reqId) === null) this.#runs.delete(reqId);
    this.#earlyCancels.delete(reqId);
  }

  /** Never throws: every failure becomes an `error` frame. Frames still queued when the socket closes are handled. */
  async #handle(data: RawData, isBinary: boolean): Promise<void> {
    // Every frame, valid or not, spends the owner's request budget (shared with HTTP).
    const limited = this.#overRateLimit();
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
    if (limited) {
      this.#sendError(reqId, limited);
      return;
    }
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

  /** A `rate_limited` error when this frame is over the owner's budget, else null. */
  #overRateLimit(): LeashError | null {
    const counter = this.#deps.rateCounter;
    if (counter === null) return null;
    const { current, ttl } = counter.hit(RateCounter.ownerKey(this.#owner));
    if (current <= counter.max) return null;
    const retry = Math.ceil(ttl / 1000);
    return new LeashError(
      'rate_limited',
      `Too many requests: this API key may send ${counter.max} requests or frames per ${Math.round(counter.windowMs / 1000)} s. Retry in ${retry} s.`,
      { details: { limit: counter.max, retry_after_s: retry } },
    );
  }

  async #dispatch(type: FrameType, frame: Record<string, unknown>): Promise<void> {
    switch (type) {
      case 'run': {
        try {
          return await ('task' in frame ? this.#runTask(frame) : this.#runThread(frame));
        } catch (err) {
          const rid = requestId.safeParse(frame.request_id);
          if (rid.success) this.#forgetRun(rid.data);
          throw err;
        }
      }
      case 'cancel': {
        const f = parseOrThrow(cancelFrame, frame, 'cancel frame');
        if (f.task_id !== undefined) return this.#cancel(f.request_id, f.task_id, f.reason ?? 'user');
        return this.#cancelRun(f.request_id!, f.reason ?? 'user');
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

  /** Remembers a run being created (for cancel by request_id; a large frame was not seen on arrival). */
  async #creating(reqId: RequestId, create: () => Promise<void>): Promise<void> {
    if (this.#runs.get(reqId) !== null) this.#rememberRun(reqId, null);
    await create();
  }

  async #runTask(frame: Record<string, unknown>): Promise<void> {
    const f = parseOrThrow(runTaskFrame, frame, 'run frame');
    return this.#creating(f.request_id, () => this.#createTask(f));
  }

  async #createTask(f: z.output<typeof runTaskFrame>): Promise<void> {
    const t = f.task;
    this.#checkSubscriptionRoom();
    if (f.on_disconnect !== undefined && t.on_disconnect !== undefined && f.on_disconnect !== t.on_disconnect) {
      throw new LeashError('invalid_request', 'on_disconnect is given twice with different values.', {
        details: [{ path: 'task.on_disconnect', message: 'differs from on_disconnect' }],
      });
    }
    const { task } = await this.#deps.runtime.create(
      this.#owner,
      {
        type: t.type,
        input: t.input === undefined ? {} : t.input,
        ...(t.priority !== undefined && { priority: t.priority }),
        ...(t.deadline_ms !== undefined && { deadline_ms: t.deadline_ms }),
        ...(t.thread_id !== undefined && { thread_id: t.thread_id }),
      },
      // A cancel that came with the run stops it before its handler starts.
      { cancelled: () => this.#earlyCancels.get(f.request_id) ?? null },
    );
    await this.#started(f.request_id, task, f.on_disconnect ?? t.on_disconnect ?? 'continue', {});
  }

  async #runThread(frame: Record<string, unknown>): Promise<void> {
    const f = parseOrThrow(runThreadFrame, frame, 'run frame');
    return this.#creating(f.request_id, () => this.#createThreadRun(f));
  }

  async #createThreadRun(f: z.output<typeof runThreadFrame>): Promise<void> {
    this.#checkSubscriptionRoom();
    const run = await this.#deps.threads.run(
      f.thread_id,
      this.#owner,
      {
        content: f.content,
        ...(f.model !== undefined && { model: f.model }),
        ...(f.multitask !== undefined && { multitask: f.multitask }),
        ...(f.system !== undefined && { system: f.system }),
        ...(f.deadline_ms !== undefined && { deadline_ms: f.deadline_ms }),
      },
      { cancelled: () => this.#earlyCancels.get(f.request_id) ?? null },
    );
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
    this.#rememberRun(reqId, task.id);
    const early = this.#earlyCancels.get(reqId);
    if (early !== undefined) {
      // Cancelled by request_id before it existed: it never runs to completion.
      this.#earlyCancels.delete(reqId);
      this.#send({ type: 'ack', request_id: reqId, task_id: task.id, ...extra });
      this.#follow(task.id, 0);
      await this.#cancel(reqId, task.id, early);
      return;
    }
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

  /** Cancel by the request_id of one of this socket's runs. */
  async #cancelRun(reqId: RequestId, reason: CancelReason): Promise<void> {
    const id = this.#runs.get(reqId);
    if (id === undefined) {
      throw new LeashError('not_found', `No run of this socket has request_id ${JSON.stringify(reqId)}.`);
    }
    // Still being created (not expected here: a cancel that arrives while its run is
    // being created is taken on arrival): applied, and acknowledged, once the task exists.
    if (id === null) this.#earlyCancels.set(reqId, reason);
    else await this.#cancel(reqId, id, reason);
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

  #cancelForDisconnect(id: string): Promise<void> {
    return cancelForDisconnect(this.#deps.runtime, this.#owner, id, this.#log);
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
