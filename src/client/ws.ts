// LeashSocket: the WebSocket API of SPEC §3 over the global WebSocket (browsers,
// Node 24). One socket starts runs, cancels them and follows many tasks' events.
// Requests carry a request_id and resolve on their `ack` / `cancel_ack` / `pong`
// or reject on their `error` frame (typed like HTTP errors). Event streams are
// deduplicated by seq; when the socket drops (or the server closes it with 1001 /
// 1013) it reconnects and re-subscribes each followed task after the last seq
// received, so a stream sees every event once. Requests in flight when the socket
// drops reject with LeashConnectionError (a run may or may not have started:
// look at the thread or task list before repeating it).

import { ERROR_STATUS, isErrorCode } from '../core/error-codes.ts';
import { Channel } from './channel.ts';
import { LeashConnectionError, apiErrorFrom, type LeashApiError } from './errors.ts';
import type {
  CancelReason,
  ReconnectOptions,
  RunParams,
  SocketTaskParams,
  TaskStatus,
  TaskStreamEvent,
} from './types.ts';

export const WS_SUBPROTOCOL = 'leash.v1';

type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocket;

export interface LeashSocketOptions {
  /** `ws(s)://host/api/ws`; or give `baseUrl` (http/https, '' for the page's origin) and it is derived. */
  url?: string;
  baseUrl?: string;
  apiKey?: string;
  /** WebSocket implementation (default: the global one). */
  WebSocket?: WebSocketCtor;
  /** Reconnect after an unexpected close (default on). */
  reconnect?: ReconnectOptions & { enabled?: boolean };
  /** A request without an answer within this rejects (default 30 s). */
  requestTimeoutMs?: number;
}

export interface RequestSignal {
  signal?: AbortSignal;
}

/** A run started over the socket: its task id (and thread message ids), and its events from seq 1. */
export interface SocketRun extends AsyncIterable<TaskStreamEvent> {
  task_id: string;
  thread_id?: string;
  user_message_id?: string;
  assistant_message_id?: string;
  cancelled_task_ids?: string[];
  events: AsyncIterable<TaskStreamEvent>;
}

export interface CancelAck {
  task_id: string | null;
  status: TaskStatus | null;
}

type Frame = Record<string, unknown> & { type: string };

interface Pending {
  resolve(frame: Frame): void;
  reject(err: unknown): void;
  /** Runs register their event channel before the ack resolves, so no event can slip past. */
  onAck?: (frame: Frame) => void;
}

function wsUrlFrom(opts: LeashSocketOptions): string {
  if (opts.url !== undefined) return opts.url;
  const base = opts.baseUrl ?? '';
  const origin = (globalThis as { location?: { href: string } }).location?.href;
  const u = new URL(`${base.replace(/\/+$/, '')}/api/ws`, origin);
  u.protocol = u.protocol === 'https:' ? 'wss:' : u.protocol === 'http:' ? 'ws:' : u.protocol;
  return u.toString();
}

/** A key usable as a subprotocol token; others go in `?api_key=`. */
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export class LeashSocket {
  readonly url: string;
  readonly #opts: LeashSocketOptions;
  readonly #WS: WebSocketCtor;
  #ws: WebSocket | null = null;
  #open: Promise<void>;
  #closedByUser = false;
  #failures = 0;
  #nextId = 1;
  readonly #pending = new Map<string, Pending>();
  readonly #channels = new Map<string, Set<Channel>>();

  constructor(opts: LeashSocketOptions) {
    this.#opts = opts;
    this.url = wsUrlFrom(opts);
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    if (WS === undefined) throw new TypeError('No WebSocket implementation: pass opts.WebSocket');
    this.#WS = WS;
    this.#open = this.#connect();
    this.#open.catch(() => {}); // surfaced to the first request instead
  }

  /** Resolves once the socket is open (rejects if it cannot be opened). */
  ready(): Promise<void> {
    return this.#open;
  }

  #connect(): Promise<void> {
    const key = this.#opts.apiKey;
    let url = this.url;
    const protocols = [WS_SUBPROTOCOL];
    if (key) {
      if (TOKEN_RE.test(key)) protocols.push(`bearer.${key}`);
      else url += `${url.includes('?') ? '&' : '?'}api_key=${encodeURIComponent(key)}`;
    }
    return new Promise<void>((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new this.#WS(url, protocols);
      } catch (err) {
        reject(new LeashConnectionError(`Could not open ${this.url}`, { cause: err }));
        return;
      }
      this.#ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.#failures = 0;
        resolve();
        this.#resubscribe();
      };
      ws.onmessage = (ev: MessageEvent) => this.#onFrame(ev.data);
      ws.onerror = () => {
        // The close event follows with the details.
      };
      ws.onclose = (ev: CloseEvent) => {
        if (this.#ws === ws) this.#ws = null;
        const err = new LeashConnectionError(
          `WebSocket ${opened ? 'closed' : 'could not open'} (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`,
        );
        if (!opened) reject(err);
        this.#onClosed(err);
      };
    });
  }

  #onClosed(err: LeashConnectionError): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    const r = this.#opts.reconnect;
    const enabled = r?.enabled ?? true;
    const max = r?.maxRetries ?? 10;
    if (this.#closedByUser || !enabled || this.#failures >= max) {
      for (const set of this.#channels.values()) for (const c of set) c.fail(err);
      this.#channels.clear();
      if (!this.#closedByUser && enabled) this.#open = Promise.reject(err);
      this.#open.catch(() => {});
      return;
    }
    this.#failures++;
    const delay = Math.min(r?.maxDelayMs ?? 5000, (r?.initialDelayMs ?? 200) * 2 ** (this.#failures - 1));
    this.#open = new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        if (this.#closedByUser) return reject(err);
        this.#connect().then(resolve, reject);
      }, delay);
    });
    this.#open.catch(() => {});
  }

  /** After a reconnect: follow every unfinished stream again from its last seq. */
  #resubscribe(): void {
    for (const [taskId, set] of this.#channels) {
      const live = [...set].filter((c) => !c.done);
      if (live.length === 0) {
        this.#channels.delete(taskId);
        continue;
      }
      const after = Math.min(...live.map((c) => c.last));
      this.#sendRaw({ type: 'subscribe', task_id: taskId, after });
    }
  }

  #onFrame(data: unknown): void {
    if (typeof data !== 'string') return;
    let f: Frame;
    try {
      f = JSON.parse(data) as Frame;
    } catch {
      return;
    }
    const rid = f.request_id === undefined || f.request_id === null ? undefined : String(f.request_id);
    switch (f.type) {
      case 'event': {
        const taskId = String(f.task_id);
        const e = {
          type: f.event,
          data: f.data ?? {},
          task_id: taskId,
          seq: Number(f.seq),
          ...(typeof f.created_at === 'string' && { created_at: f.created_at }),
        } as TaskStreamEvent;
        const set = this.#channels.get(taskId);
        if (set) for (const c of set) c.push(e);
        return;
      }
      case 'ack':
      case 'cancel_ack':
      case 'pong': {
        if (rid === undefined) return;
        const p = this.#pending.get(rid);
        if (!p) return;
        this.#pending.delete(rid);
        p.onAck?.(f);
        p.resolve(f);
        return;
      }
      case 'error': {
        const err = this.#toError(f.error);
        const p = rid === undefined ? undefined : this.#pending.get(rid);
        if (p && rid !== undefined) {
          this.#pending.delete(rid);
          p.reject(err);
          return;
        }
        // A stream of a followed task failed on the server.
        if (typeof f.task_id === 'string') {
          for (const c of this.#channels.get(f.task_id) ?? []) c.fail(err);
          this.#channels.delete(f.task_id);
        }
        return;
      }
    }
  }

  #toError(raw: unknown): LeashApiError {
    const e = (raw ?? {}) as { code?: unknown; message?: unknown; details?: unknown };
    const code = typeof e.code === 'string' ? e.code : 'unknown_error';
    return apiErrorFrom({
      // The status HTTP answers the code with, so WebSocket errors get the same classes.
      status: isErrorCode(code) ? ERROR_STATUS[code] : 0,
      code,
      message: typeof e.message === 'string' ? e.message : code,
      details: e.details,
    });
  }

  #sendRaw(frame: Record<string, unknown>): boolean {
    const ws = this.#ws;
    if (ws === null || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a frame with a fresh request_id and resolves with its answer. */
  async #request(frame: Record<string, unknown>, opts: RequestSignal, onAck?: (f: Frame) => void): Promise<Frame> {
    const { signal } = opts;
    signal?.throwIfAborted();
    await this.#open;
    signal?.throwIfAborted();
    const id = `r${this.#nextId++}`;
    return new Promise<Frame>((resolve, reject) => {
      const timeoutMs = this.#opts.requestTimeoutMs ?? 30_000;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new LeashConnectionError(`No answer to "${String(frame.type)}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const onAbort = (): void => {
        this.#pending.delete(id);
        done();
        // A run aborted before its ack may already exist on the server: stop it by its
        // request_id (SPEC §3), so giving up on the answer never leaves it running.
        if (frame.type === 'run') this.#sendRaw({ type: 'cancel', request_id: id });
        reject(signal?.reason);
      };
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, {
        resolve: (f) => (done(), resolve(f)),
        reject: (e) => (done(), reject(e)),
        ...(onAck !== undefined && { onAck }),
      });
      if (!this.#sendRaw({ ...frame, request_id: id })) {
        this.#pending.delete(id);
        done();
        reject(new LeashConnectionError('WebSocket is not open'));
      }
    });
  }

  #channel(taskId: string, after: number): Channel {
    const c = new Channel(taskId, after);
    let set = this.#channels.get(taskId);
    if (!set) this.#channels.set(taskId, (set = new Set()));
    set.add(c);
    return c;
  }

  #iterable(c: Channel, signal?: AbortSignal): AsyncIterable<TaskStreamEvent> {
    return {
      [Symbol.asyncIterator]: () => {
        const it = c.iterate(signal);
        const cleanup = (): void => {
          const set = this.#channels.get(c.taskId);
          set?.delete(c);
          if (set && set.size === 0) {
            this.#channels.delete(c.taskId);
            // Nobody follows it any more: stop the server sending it.
            if (!c.done || signal?.aborted) this.#sendRaw({ type: 'unsubscribe', task_id: c.taskId });
          }
        };
        return {
          next: async () => {
            try {
              const r = await it.next();
              if (r.done) cleanup();
              return r;
            } catch (err) {
              cleanup();
              throw err;
            }
          },
          return: async () => {
            cleanup();
            return it.return(undefined);
          },
        };
      },
    };
  }

  #runResult(f: Frame, c: Channel, signal?: AbortSignal): SocketRun {
    const events = this.#iterable(c, signal);
    const { type: _t, request_id: _r, ...rest } = f;
    return {
      ...(rest as Omit<SocketRun, 'events' | typeof Symbol.asyncIterator>),
      task_id: String(f.task_id),
      events,
      [Symbol.asyncIterator]: () => events[Symbol.asyncIterator](),
    };
  }

  /** Starts a task; the server follows its events for this socket from seq 1. */
  async runTask(
    task: SocketTaskParams,
    opts: RequestSignal & { onDisconnect?: 'cancel' | 'continue' } = {},
  ): Promise<SocketRun> {
    let c: Channel | null = null;
    const f = await this.#request(
      { type: 'run', task, ...(opts.onDisconnect !== undefined && { on_disconnect: opts.onDisconnect }) },
      opts,
      (ack) => (c = this.#channel(String(ack.task_id), 0)),
    );
    return this.#runResult(f, c!, opts.signal);
  }

  /** Sends a message in a thread (a `chat` run), following its events. */
  async runThread(
    threadId: string,
    params: RunParams,
    opts: RequestSignal & { onDisconnect?: 'cancel' | 'continue' } = {},
  ): Promise<SocketRun> {
    let c: Channel | null = null;
    const f = await this.#request(
      {
        type: 'run',
        thread_id: threadId,
        ...params,
        ...(opts.onDisconnect !== undefined && { on_disconnect: opts.onDisconnect }),
      },
      opts,
      (ack) => (c = this.#channel(String(ack.task_id), 0)),
    );
    return this.#runResult(f, c!, opts.signal);
  }

  /** Asks a task to stop; resolves with its status (`cancelling` or `cancelled`). */
  async cancel(taskId: string, opts: RequestSignal & { reason?: CancelReason } = {}): Promise<CancelAck> {
    const f = await this.#request(
      { type: 'cancel', task_id: taskId, ...(opts.reason !== undefined && { reason: opts.reason }) },
      opts,
    );
    return { task_id: (f.task_id as string | null) ?? null, status: (f.status as TaskStatus | null) ?? null };
  }

  /**
   * Cancels with reason `interrupted`, by task or by thread. For a thread the
   * server sends one cancel_ack per active run; this resolves with the first.
   */
  async interrupt(target: { task_id: string } | { thread_id: string }, opts: RequestSignal = {}): Promise<CancelAck> {
    const f = await this.#request({ type: 'interrupt', ...target }, opts);
    return { task_id: (f.task_id as string | null) ?? null, status: (f.status as TaskStatus | null) ?? null };
  }

  /** Follows a task's events after `after` (default 0) until its terminal event. */
  subscribe(taskId: string, opts: RequestSignal & { after?: number } = {}): AsyncIterable<TaskStreamEvent> {
    const after = opts.after ?? 0;
    const c = this.#channel(taskId, after);
    // The ack (or a not_found error) comes back on the channel.
    this.#request({ type: 'subscribe', task_id: taskId, after }, opts).catch((err: unknown) => c.fail(err));
    return this.#iterable(c, opts.signal);
  }

  /** Round trip in ms. */
  async ping(opts: RequestSignal = {}): Promise<number> {
    const t0 = performance.now();
    await this.#request({ type: 'ping' }, opts);
    return performance.now() - t0;
  }

  /** Closes for good (no reconnect). Open streams end with LeashConnectionError. */
  close(): void {
    this.#closedByUser = true;
    const ws = this.#ws;
    this.#ws = null;
    const err = new LeashConnectionError('WebSocket closed by the client');
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    for (const set of this.#channels.values()) for (const c of set) c.fail(err);
    this.#channels.clear();
    ws?.close(1000);
  }
}
