// LeashClient: the HTTP + SSE client of SPEC §1–2, for browsers and Node 24 alike
// (fetch, ReadableStream, TextDecoderStream, AbortSignal only). Every call takes
// an options object with `signal`; aborting rejects with the signal's reason.
// `tasks.events()` survives dropped connections: it reconnects with
// `Last-Event-ID` and drops any seq it has already yielded, so a consumer sees
// every event exactly once, in order.

import { LeashConnectionError, ServerError, errorFromResponse } from './errors.ts';
import { parseSse } from './sse.ts';
import { PagePromise } from './page.ts';
import { describe, sleep, toStreamEvent } from './util.ts';
import { LeashSocket, type LeashSocketOptions } from './ws.ts';
import type {
  CancelManyFilter,
  CancelManyResult,
  CancelReason,
  CreateTaskOptions,
  CreateTaskParams,
  CreateThreadParams,
  EventsOptions,
  HealthResponse,
  ListTasksParams,
  ListThreadsParams,
  Message,
  ModelInfo,
  Page,
  ReconnectOptions,
  RequestOptions,
  RunParams,
  RunResponse,
  Task,
  TaskDetail,
  TaskStreamEvent,
  Thread,
  WaitOptions,
  WorkerInfo,
} from './types.ts';
import { TERMINAL_EVENTS, isTerminalStatus } from './types.ts';

export { PagePromise };

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface LeashClientOptions {
  /** e.g. `http://127.0.0.1:8080`; `''` or `/` for the page's own origin in a browser. */
  baseUrl: string;
  apiKey?: string;
  fetch?: FetchLike;
  /** Sent with every request. */
  headers?: Record<string, string>;
  reconnect?: ReconnectOptions;
}

interface CallOptions extends RequestOptions {
  query?: Record<string, string | number | boolean | string[] | undefined>;
  body?: unknown;
}

/** A started run (or task) and its event stream: iterate it for the events. */
export interface TaskStream<T extends Task = Task> extends AsyncIterable<TaskStreamEvent> {
  /** The task as created (for a thread run: with the ids of the turn's messages). */
  readonly task: T;
  readonly events: AsyncIterable<TaskStreamEvent>;
  /** Asks the server to stop the task (the stream then ends with `task.cancelled`). */
  cancel(reason?: CancelReason, opts?: RequestOptions): Promise<Task>;
}

const enc = encodeURIComponent;

export class LeashClient {
  readonly baseUrl: string;
  /** Bearer key sent with every request; may be changed at any time (e.g. after a 401). */
  apiKey: string | undefined;
  readonly tasks: TasksApi;
  readonly threads: ThreadsApi;
  readonly #fetch: FetchLike;
  readonly #headers: Record<string, string>;
  readonly reconnect: Required<ReconnectOptions>;

  constructor(opts: LeashClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.apiKey = opts.apiKey;
    // Called through a wrapper: a browser's fetch throws "Illegal invocation" when called as a method of another object.
    const f = opts.fetch;
    this.#fetch = f ?? ((input, init) => globalThis.fetch(input, init));
    this.#headers = { ...opts.headers };
    this.reconnect = {
      maxRetries: opts.reconnect?.maxRetries ?? 10,
      initialDelayMs: opts.reconnect?.initialDelayMs ?? 200,
      maxDelayMs: opts.reconnect?.maxDelayMs ?? 5000,
    };
    this.tasks = new TasksApi(this);
    this.threads = new ThreadsApi(this);
  }

  /** `GET /healthz`. */
  health(opts: RequestOptions = {}): Promise<HealthResponse> {
    return this.json<HealthResponse>('GET', '/healthz', opts);
  }

  /** Opens the WebSocket API (`/api/ws`) with this client's base URL, key and reconnect settings. */
  socket(opts: Omit<LeashSocketOptions, 'baseUrl'> = {}): LeashSocket {
    return new LeashSocket({
      baseUrl: this.baseUrl,
      ...(this.apiKey !== undefined && { apiKey: this.apiKey }),
      reconnect: this.reconnect,
      ...opts,
    });
  }

  /** `GET /v1/models` (the OpenAI-compatible list), as `[{id, …}]`. */
  async models(opts: RequestOptions = {}): Promise<ModelInfo[]> {
    const r = await this.json<{ data?: ModelInfo[] }>('GET', '/v1/models', opts);
    return Array.isArray(r.data) ? r.data : [];
  }

  /** The server's default model (what a request naming none gets) and the models it lists. */
  async modelInfo(opts: RequestOptions = {}): Promise<{ default: string; data: ModelInfo[] }> {
    return this.json<{ default: string; data: ModelInfo[] }>('GET', '/api/models', opts);
  }

  /** The remote workers of the caller's owner connected to this node, with the attempts they run. */
  async workers(opts: RequestOptions = {}): Promise<WorkerInfo[]> {
    const r = await this.json<{ data?: WorkerInfo[] }>('GET', '/api/workers', opts);
    return Array.isArray(r.data) ? r.data : [];
  }

  /** Full URL of an API path, with a query string from the defined values. */
  url(path: string, query?: CallOptions['query']): string {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      qs.set(k, Array.isArray(v) ? v.join(',') : String(v));
    }
    const s = qs.toString();
    return `${this.baseUrl}${path}${s === '' ? '' : `?${s}`}`;
  }

  /** Headers of every request: defaults, the API key, then the call's own. */
  headers(extra?: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json', ...this.#headers };
    if (this.apiKey) h.authorization = `Bearer ${this.apiKey}`;
    return { ...h, ...extra };
  }

  /** One request; resolves with the response when it is 2xx, throws the typed error otherwise. */
  async send(method: string, path: string, opts: CallOptions = {}): Promise<Response> {
    const { signal } = opts;
    signal?.throwIfAborted();
    const headers = this.headers(opts.headers);
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    let res: Response;
    try {
      res = await this.#fetch(this.url(path, opts.query), {
        method,
        headers,
        ...(body !== undefined && { body }),
        ...(signal !== undefined && { signal }),
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw new LeashConnectionError(`${method} ${path}: could not reach the leash server (${describe(err)})`, {
        cause: err,
      });
    }
    if (!res.ok) {
      const e = await errorFromResponse(res);
      if (signal?.aborted) throw signal.reason;
      throw e;
    }
    return res;
  }

  /** `send` + the JSON body (undefined for 204). */
  async json<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
    const res = await this.send(method, path, opts);
    if (res.status === 204) return undefined as T;
    try {
      const text = await res.text();
      return (text === '' ? undefined : JSON.parse(text)) as T;
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw new LeashConnectionError(`${method} ${path}: the response could not be read (${describe(err)})`, {
        cause: err,
      });
    }
  }

  /**
   * A task's events from `after`, following live ones until the terminal event.
   * On a dropped connection (or a 502/503/504) it reconnects after a backoff with
   * `Last-Event-ID` = the last seq it yielded, and skips anything at or below it.
   */
  async *streamEvents(taskId: string, opts: EventsOptions = {}): AsyncGenerator<TaskStreamEvent> {
    const { signal } = opts;
    const reconnect = opts.reconnect ?? true;
    let last = opts.after ?? 0;
    let failures = 0;
    let lastError: unknown = null;
    const path = `/api/tasks/${enc(taskId)}/events`;
    for (;;) {
      if (failures > 0) {
        if (!reconnect || failures > this.reconnect.maxRetries) {
          throw new LeashConnectionError(
            `Event stream of ${taskId} dropped${reconnect ? ` ${failures} times in a row` : ''} (${describe(lastError)})`,
            { cause: lastError },
          );
        }
        const delay = Math.min(this.reconnect.maxDelayMs, this.reconnect.initialDelayMs * 2 ** (failures - 1));
        await sleep(delay, signal);
      }
      let res: Response;
      try {
        res = await this.send('GET', path, {
          ...(signal !== undefined && { signal }),
          query: { ...(opts.onDisconnect !== undefined && { on_disconnect: opts.onDisconnect }) },
          headers: { accept: 'text/event-stream', 'last-event-id': String(last), ...opts.headers },
        });
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const retryable =
          err instanceof LeashConnectionError || (err instanceof ServerError && [502, 503, 504].includes(err.status));
        if (!retryable) throw err;
        lastError = err;
        failures++;
        continue;
      }
      if (res.body === null) {
        lastError = new Error('empty response body');
        failures++;
        continue;
      }
      try {
        for await (const frame of parseSse(res.body)) {
          if (frame.id === null) continue;
          const seq = Number(frame.id);
          if (!Number.isInteger(seq) || seq <= last) continue; // already yielded before a reconnect
          const event = toStreamEvent(frame.event, frame.data, taskId);
          last = seq;
          failures = 0;
          yield event;
          if (TERMINAL_EVENTS.has(event.type)) return;
        }
        lastError = new Error('stream ended before the terminal event');
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (err instanceof SyntaxError)
          throw new LeashConnectionError(`Malformed event in ${taskId}'s stream`, { cause: err });
        lastError = err;
      }
      failures++;
    }
  }
}

/** Helper for signal-only options spread into a call. */
const sig = (o: RequestOptions): RequestOptions => ({
  ...(o.signal !== undefined && { signal: o.signal }),
  ...(o.headers !== undefined && { headers: o.headers }),
});

export class TasksApi {
  readonly #c: LeashClient;
  constructor(client: LeashClient) {
    this.#c = client;
  }

  /** `POST /api/tasks` → the task (202): `queued`, or already `running` when a node had a free slot. */
  create(params: CreateTaskParams, opts: CreateTaskOptions = {}): Promise<Task> {
    const headers = { ...opts.headers };
    if (opts.idempotencyKey !== undefined) headers['idempotency-key'] = opts.idempotencyKey;
    return this.#c.json<Task>('POST', '/api/tasks', { ...sig(opts), headers, body: params });
  }

  /** Creates the task and follows its events. */
  async createAndStream(
    params: CreateTaskParams,
    opts: CreateTaskOptions & Omit<EventsOptions, 'after'> = {},
  ): Promise<TaskStream> {
    const task = await this.create(params, opts);
    return taskStream(this, task, opts);
  }

  get(id: string, opts: RequestOptions = {}): Promise<TaskDetail> {
    return this.#c.json<TaskDetail>('GET', `/api/tasks/${enc(id)}`, sig(opts));
  }

  list(params: ListTasksParams = {}, opts: RequestOptions = {}): PagePromise<Task> {
    const { cursor, ...rest } = params;
    return new PagePromise<Task>(
      (c) =>
        this.#c.json<Page<Task>>('GET', '/api/tasks', {
          ...sig(opts),
          query: { ...rest, status: rest.status === undefined ? undefined : [rest.status].flat(), cursor: c },
        }),
      cursor,
    );
  }

  /** Asks the task to stop. Resolves with the task (`cancelling` while it stops, `cancelled` once it has). */
  cancel(id: string, opts: RequestOptions & { reason?: CancelReason } = {}): Promise<Task> {
    return this.#c.json<Task>('POST', `/api/tasks/${enc(id)}/cancel`, {
      ...sig(opts),
      body: opts.reason === undefined ? {} : { reason: opts.reason },
    });
  }

  /** Batch cancel of the caller's active tasks matching the filter. */
  cancelMany(filter: CancelManyFilter = {}, opts: RequestOptions = {}): Promise<CancelManyResult> {
    return this.#c.json<CancelManyResult>('POST', '/api/tasks/cancel', { ...sig(opts), body: filter });
  }

  /** Resolves with the task once it has ended, or as it is when `timeoutMs` runs out. */
  async wait(id: string, opts: WaitOptions = {}): Promise<TaskDetail> {
    const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
    const pollS = Math.min(300, Math.max(0, opts.pollSeconds ?? 30));
    for (;;) {
      const remainingS = Math.max(0, (deadline - Date.now()) / 1000);
      const timeout = Math.round(Math.min(pollS, remainingS) * 1000) / 1000;
      const task = await this.#c.json<TaskDetail>('GET', `/api/tasks/${enc(id)}/wait`, {
        ...sig(opts),
        query: { timeout_s: timeout },
      });
      if (isTerminalStatus(task.status) || Date.now() >= deadline) return task;
    }
  }

  /** Deletes an ended task (409 `task_active` otherwise). */
  async delete(id: string, opts: RequestOptions = {}): Promise<void> {
    await this.#c.json<void>('DELETE', `/api/tasks/${enc(id)}`, sig(opts));
  }

  /** The task's events after `opts.after`, live until the terminal one; resumes across dropped connections. */
  events(id: string, opts: EventsOptions = {}): AsyncIterable<TaskStreamEvent> {
    const c = this.#c;
    return { [Symbol.asyncIterator]: () => c.streamEvents(id, opts) };
  }
}

function taskStream<T extends Task>(
  tasks: TasksApi,
  task: T,
  opts: RequestOptions & Omit<EventsOptions, 'after'>,
): TaskStream<T> {
  const events = tasks.events(task.id, {
    ...(opts.signal !== undefined && { signal: opts.signal }),
    ...(opts.reconnect !== undefined && { reconnect: opts.reconnect }),
    ...(opts.onDisconnect !== undefined && { onDisconnect: opts.onDisconnect }),
  });
  return {
    task,
    events,
    [Symbol.asyncIterator]: () => events[Symbol.asyncIterator](),
    cancel: (reason, o = {}) => tasks.cancel(task.id, { ...o, ...(reason !== undefined && { reason }) }),
  };
}

export class ThreadsApi {
  readonly #c: LeashClient;
  constructor(client: LeashClient) {
    this.#c = client;
  }

  create(params: CreateThreadParams = {}, opts: RequestOptions = {}): Promise<Thread> {
    return this.#c.json<Thread>('POST', '/api/threads', { ...sig(opts), body: params });
  }

  get(id: string, opts: RequestOptions = {}): Promise<Thread> {
    return this.#c.json<Thread>('GET', `/api/threads/${enc(id)}`, sig(opts));
  }

  list(params: ListThreadsParams = {}, opts: RequestOptions = {}): PagePromise<Thread> {
    return new PagePromise<Thread>(
      (c) =>
        this.#c.json<Page<Thread>>('GET', '/api/threads', { ...sig(opts), query: { limit: params.limit, cursor: c } }),
      params.cursor,
    );
  }

  /** Deletes the thread and its messages (409 `thread_busy` while a run is active). */
  async delete(id: string, opts: RequestOptions = {}): Promise<void> {
    await this.#c.json<void>('DELETE', `/api/threads/${enc(id)}`, sig(opts));
  }

  /** The whole conversation in order (every page); a streaming answer shows its text so far. */
  async messages(id: string, opts: RequestOptions = {}): Promise<Message[]> {
    const pages: Message[][] = [];
    let cursor: string | undefined;
    do {
      const page = await this.messagesPage(id, { limit: 1000, ...(cursor !== undefined && { cursor }) }, opts);
      pages.unshift(page.data);
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
    return pages.flat();
  }

  /**
   * One page of the conversation: the newest `limit` messages (server default 100,
   * at most 1000) before `cursor`, oldest first; `next_cursor` pages back in time.
   */
  messagesPage(
    id: string,
    params: { limit?: number; cursor?: string } = {},
    opts: RequestOptions = {},
  ): Promise<Page<Message> & { has_more?: boolean }> {
    return this.#c.json('GET', `/api/threads/${enc(id)}/messages`, {
      ...sig(opts),
      query: { limit: params.limit, cursor: params.cursor },
    });
  }

  /** Starts a `chat` run in the thread (the user message is stored first). */
  run(id: string, params: RunParams, opts: RequestOptions = {}): Promise<RunResponse> {
    return this.#c.json<RunResponse>('POST', `/api/threads/${enc(id)}/runs`, { ...sig(opts), body: params });
  }

  /**
   * Starts a run and follows its events. The stream resumes across dropped
   * connections; the run keeps going if this client goes away unless
   * `onDisconnect: 'cancel'` is given.
   */
  async runAndStream(
    id: string,
    params: RunParams,
    opts: RequestOptions & Omit<EventsOptions, 'after'> = {},
  ): Promise<TaskStream<RunResponse>> {
    const run = await this.run(id, params, opts);
    return taskStream(this.#c.tasks, run, opts);
  }
}
