// One socket of the WebSocket API (SPEC §3): frames handled in the order they arrive,
// except a `cancel` naming by its request_id a run still being created (taken on
// arrival, so that run is stopped before its handler starts); the runs, cancels and
// subscriptions of this socket; what its closing cancels. See ../ws.ts for the
// protocol as a whole, core/wire/ws-frames.ts for the frames.

import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import type { z } from 'zod';
import { LeashError } from '../../core/errors.ts';
import type { CancelReason, Task } from '../../core/types.ts';
import { createRequestOf } from '../../core/wire/tasks.ts';
import { threadRunOf } from '../../core/wire/threads.ts';
import {
  cancelFrame,
  CLIENT_FRAME_TYPES,
  type ClientFrameType,
  interruptFrame,
  pingFrame,
  requestIdField,
  type RequestId,
  type AckFrame,
  type ServerFrame,
  runTaskFrame,
  runThreadFrame,
  subscribeFrame,
  unsubscribeFrame,
} from '../../core/wire/ws-frames.ts';
import { parseOrThrow, toErrorResponse } from '../errors.ts';
import { RateCounter } from '../rate-limit.ts';
import { cancelForDisconnect } from '../cancel-on-disconnect.ts';
import { decodeFrame, peekFrame } from './frame-text.ts';
import { WS_CLOSE_GOING_AWAY, WS_CLOSE_TRY_AGAIN_LATER, type WebSocketDeps, type WebSocketOptions } from './options.ts';

/** Frames waiting to be handled before the server stops reading the socket, and when it reads again. */
const MAX_PENDING_FRAMES = 32;
const RESUME_PENDING_FRAMES = 8;
/** Runs remembered per socket for cancel by request_id (the oldest are forgotten first). */
const MAX_REMEMBERED_RUNS = 1000;

export class WsSession {
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
    // Refused frames are left to #handle, which answers them in order.
    const f = peekFrame(data);
    if (f === null) return false;
    const rid = requestIdField.safeParse(f.request_id);
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
    const rec = decodeFrame(data, isBinary);
    if (rec instanceof LeashError) {
      this.#sendError(undefined, rec);
      return;
    }
    const rid = requestIdField.safeParse(rec.request_id);
    const reqId = rid.success ? rid.data : undefined;
    if (limited) {
      this.#sendError(reqId, limited);
      return;
    }
    const named = typeof rec.task_id === 'string' ? rec.task_id : undefined;
    const type = rec.type;
    if (typeof type !== 'string' || !(CLIENT_FRAME_TYPES as readonly string[]).includes(type)) {
      const what = typeof type === 'string' ? `Unknown frame type "${type.slice(0, 64)}"` : 'The frame has no "type"';
      this.#sendError(
        reqId,
        new LeashError('invalid_frame', `${what}; expected one of ${CLIENT_FRAME_TYPES.join(', ')}.`),
      );
      return;
    }
    try {
      await this.#dispatch(type as ClientFrameType, rec);
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

  async #dispatch(type: ClientFrameType, frame: Record<string, unknown>): Promise<void> {
    switch (type) {
      case 'run': {
        try {
          return await ('task' in frame ? this.#runTask(frame) : this.#runThread(frame));
        } catch (err) {
          const rid = requestIdField.safeParse(frame.request_id);
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
      createRequestOf(t, t.idempotency_key),
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
    const run = await this.#deps.threads.run(f.thread_id, this.#owner, threadRunOf(f), {
      cancelled: () => this.#earlyCancels.get(f.request_id) ?? null,
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
    extra: Omit<AckFrame, 'type' | 'request_id' | 'task_id'>,
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
  #send(frame: ServerFrame): boolean {
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
    const r = toErrorResponse(err);
    if (r.internal) this.#log.error({ err }, 'websocket request failed');
    const error = r.body.error;
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
