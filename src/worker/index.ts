// `leash/worker`: a remote worker in TypeScript (Node), the protocol of docs/workers.md.
// Handlers get `ctx.signal` as in-process handlers do: it aborts the moment the
// server pushes a cancel. Handlers share this process's event loop with the socket:
// keep them async (a CPU-bound one belongs in a worker thread, or use an isolated
// task type on the server instead).
//
//   const worker = new Worker({ url: 'http://127.0.0.1:8080', apiKey, slots: 4 });
//   worker.task('summarize', async (input, ctx) => { ctx.progress(10, 'reading'); … });
//   await worker.run();   // resolves after worker.drain() once running handlers finished

import WebSocket from 'ws';

export interface WorkerContext {
  readonly taskId: string;
  readonly attempt: string;
  /** Aborts when the task is cancelled; its reason is an Error whose message names the cancel reason. */
  readonly signal: AbortSignal;
  /** The last checkpoint of an earlier attempt (after a worker was lost), else null. */
  readonly resumeState: unknown;
  readonly deadline: Date | null;
  /**
   * Each resolves once the server applied it, with the seq of the event it became in
   * the task's log (what SSE readers see as `id`; output coalesced into one
   * `output.delta` shares its seq; a checkpoint's is the last seq it covers), or null
   * when it was dropped (the task is being cancelled).
   */
  progress(percent: number | null, message?: string): Promise<number | null>;
  emit(text: string): Promise<number | null>;
  checkpoint(state: unknown): Promise<number | null>;
}

export type WorkerHandler = (input: unknown, ctx: WorkerContext) => Promise<unknown>;

export interface WorkerOptions {
  url: string;
  apiKey?: string;
  slots?: number;
  /** Reconnect after a dropped connection (default true). */
  reconnect?: boolean;
}

export class WorkerError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'WorkerError';
    this.code = code;
  }
}

interface Running {
  id: string;
  fence: number;
  controller: AbortController;
  finished: boolean;
}

interface Pending {
  frame: Record<string, unknown> & { id: string; attempt: string };
  /** The seq of the event (finish: 0), or null when the server dropped it. */
  resolve(seq: number | null): void;
  reject(e: unknown): void;
}

export class Worker {
  readonly #opts: Required<Omit<WorkerOptions, 'apiKey'>> & { apiKey: string | undefined };
  readonly #handlers = new Map<string, WorkerHandler>();
  readonly #schemas = new Map<string, Record<string, unknown>>();
  readonly #running = new Map<string, Running>();
  readonly #outbox = new Map<string, Pending>();
  #ids = 0;
  #ws: WebSocket | null = null;
  #draining = false;
  #stopped = false;
  #done: (() => void) | null = null;
  /** The server said `rate_limited` (and closes): the reconnect waits this long. */
  #retryAfterMs = 0;
  workerId: string | null = null;

  constructor(opts: WorkerOptions) {
    this.#opts = { slots: 4, reconnect: true, ...opts, apiKey: opts.apiKey };
    if (!Number.isInteger(this.#opts.slots) || this.#opts.slots < 1) throw new TypeError('slots must be ≥ 1');
  }

  /**
   * Serves `type`. `opts.schema`: a JSON Schema (2020-12; e.g. zod's `z.toJSONSchema`) the
   * server checks each create's input against (400 `invalid_request` naming the field).
   */
  task(type: string, handler: WorkerHandler, opts: { schema?: Record<string, unknown> } = {}): this {
    if (this.#handlers.has(type)) throw new TypeError(`task type "${type}" is registered twice`);
    this.#handlers.set(type, handler);
    if (opts.schema !== undefined) this.#schemas.set(type, opts.schema);
    return this;
  }

  /** Connects and serves; rejects with a WorkerError if the first connection fails. */
  async run(): Promise<void> {
    if (this.#handlers.size === 0) throw new TypeError('no task types registered: use worker.task(type, handler)');
    await this.#connect();
    await new Promise<void>((resolve) => (this.#done = resolve));
  }

  /** No new work; run() resolves once running handlers have finished and been acknowledged. */
  drain(): void {
    this.#draining = true;
    this.#send({ type: 'drain' });
    this.#maybeDone();
  }

  /** Cancels running handlers and closes at once. */
  stop(): void {
    this.#stopped = true;
    for (const r of this.#running.values()) r.controller.abort(new Error('cancelled (shutdown)'));
    this.#ws?.close();
    this.#done?.();
  }

  #url(): string {
    const u = new URL(this.#opts.url);
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol)) {
      throw new WorkerError('bad_url', `${this.#opts.url} is not an http(s):// or ws(s):// URL`);
    }
    u.protocol = u.protocol === 'https:' || u.protocol === 'wss:' ? 'wss:' : 'ws:';
    if (!u.pathname.endsWith('/api/workers/connect'))
      u.pathname = u.pathname.replace(/\/$/, '') + '/api/workers/connect';
    return u.toString();
  }

  #connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      let welcomed = false;
      const ws = new WebSocket(this.#url(), {
        headers: this.#opts.apiKey ? { authorization: `Bearer ${this.#opts.apiKey}` } : {},
      });
      ws.once('unexpected-response', (_req, res) => {
        const code = res.statusCode ?? 0;
        reject(
          code === 401 || code === 403
            ? new WorkerError('unauthorized', `the server refused the API key (HTTP ${code})`)
            : new WorkerError('bad_url', `no leash worker endpoint at ${this.#opts.url} (HTTP ${code})`),
        );
      });
      ws.once('error', (e) => {
        if (!welcomed) reject(new WorkerError('unreachable', `can't connect to ${this.#opts.url}: ${e.message}`));
      });
      ws.once('open', () => {
        this.#ws = ws;
        ws.send(
          JSON.stringify({
            type: 'hello',
            types: [...this.#handlers.keys()],
            slots: this.#opts.slots,
            running: [...this.#running.values()].map((r) => ({ attempt: r.id, fence: r.fence })),
            ...(this.#schemas.size > 0 && { schemas: Object.fromEntries(this.#schemas) }),
            sdk: 'leash-node/0.1',
          }),
        );
      });
      ws.on('message', (data) => {
        let f: Record<string, unknown>;
        try {
          f = JSON.parse(String(data)) as Record<string, unknown>;
        } catch {
          return;
        }
        if (!welcomed) {
          if (f.type === 'error') {
            const err = f.error as { code: string; message: string };
            reject(new WorkerError(err.code, err.message));
            return;
          }
          if (f.type !== 'welcome') return;
          welcomed = true;
          this.workerId = f.worker_id as string;
          const kept = new Set(f.kept as string[]);
          for (const r of [...this.#running.values()]) if (!kept.has(r.id)) this.#forget(r, 'worker_lost');
          for (const p of this.#outbox.values()) ws.send(JSON.stringify(p.frame));
          if (this.#draining) ws.send('{"type":"drain"}');
          resolve();
          return;
        }
        this.#onFrame(f);
      });
      ws.on('close', () => {
        if (this.#ws === ws) this.#ws = null;
        if (!welcomed || this.#stopped || !this.#opts.reconnect) {
          if (welcomed) this.#done?.();
          return;
        }
        if (this.#draining && this.#running.size === 0) return this.#done?.();
        const retry = (delay: number): void => {
          setTimeout(() => {
            if (this.#stopped) return;
            this.#connect().catch(() => retry(Math.min(2000, delay * 2)));
          }, delay);
        };
        const wait = Math.max(100, this.#retryAfterMs);
        this.#retryAfterMs = 0;
        retry(wait);
      });
    });
  }

  #send(frame: unknown): void {
    if (this.#ws?.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify(frame));
  }

  #onFrame(f: Record<string, unknown>): void {
    switch (f.type) {
      case 'ping':
        return this.#send({ type: 'pong' });
      case 'assign':
        return this.#onAssign(f);
      case 'cancel': {
        this.#send({ type: 'cancel_ack', attempt: f.attempt });
        const r = this.#running.get(f.attempt as string);
        if (r && !r.controller.signal.aborted) r.controller.abort(new Error(`cancelled (${String(f.reason)})`));
        return;
      }
      case 'ack': {
        const p = this.#outbox.get(f.id as string);
        if (!p) return;
        this.#outbox.delete(f.id as string);
        p.resolve(f.applied === false ? null : typeof f.seq === 'number' ? f.seq : 0);
        if (p.frame.type === 'finish') this.#running.delete(p.frame.attempt);
        this.#maybeDone(); // draining: the last ack may be an event's
        return;
      }
      case 'error': {
        const err = f.error as { code: string; message: string; details?: { retry_after_s?: unknown } };
        if (err.code === 'rate_limited') {
          const s = err.details?.retry_after_s;
          this.#retryAfterMs = typeof s === 'number' ? s * 1000 : 1000;
        }
        const p = typeof f.id === 'string' ? this.#outbox.get(f.id) : undefined;
        if (p) {
          this.#outbox.delete(f.id as string);
          p.reject(new WorkerError(err.code, err.message));
        }
        const r = this.#running.get(f.attempt as string);
        if (err.code === 'fenced' && r) this.#forget(r, 'fenced');
        return;
      }
    }
  }

  #onAssign(f: Record<string, unknown>): void {
    const task = f.task as {
      id: string;
      type: string;
      input: unknown;
      deadline_at: string | null;
      resume_state: unknown;
    };
    const handler = this.#handlers.get(task.type);
    if (this.#draining || !handler) return; // not accepted: the server gives it to another worker
    const r: Running = {
      id: f.attempt as string,
      fence: f.fence as number,
      controller: new AbortController(),
      finished: false,
    };
    this.#running.set(r.id, r);
    this.#send({ type: 'accept', attempt: r.id, fence: r.fence });
    const event = (body: Record<string, unknown>): Promise<number | null> => this.#queue(r, { type: 'event', ...body });
    const ctx: WorkerContext = {
      taskId: task.id,
      attempt: r.id,
      signal: r.controller.signal,
      resumeState: task.resume_state ?? null,
      deadline: task.deadline_at ? new Date(task.deadline_at) : null,
      progress: (percent, message) =>
        event({
          kind: 'progress',
          progress: percent === null ? null : Math.min(100, Math.max(0, percent)),
          message: message ?? null,
        }),
      emit: (text) => event({ kind: 'output', text }),
      checkpoint: (state) => event({ kind: 'checkpoint', state }),
    };
    void (async () => {
      let body: Record<string, unknown>;
      try {
        const result = await handler(task.input, ctx);
        body = r.controller.signal.aborted
          ? { error: { code: 'cancelled', message: 'cancelled', cancelled: true } }
          : { result: result === undefined ? null : result };
      } catch (e) {
        body = r.controller.signal.aborted
          ? { error: { code: 'cancelled', message: 'cancelled', cancelled: true } }
          : {
              error: {
                code:
                  typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : 'handler_error',
                message: String((e as Error)?.message ?? e).slice(0, 4000),
              },
            };
      }
      const finishing = this.#queue(r, { type: 'finish', ...body });
      r.finished = true;
      await finishing.catch(() => {});
    })();
  }

  #queue(r: Running, body: Record<string, unknown>): Promise<number | null> {
    if (r.finished || !this.#running.has(r.id)) return Promise.resolve(null);
    const frame = { ...body, id: `n${++this.#ids}`, attempt: r.id, fence: r.fence };
    return new Promise((resolve, reject) => {
      this.#outbox.set(frame.id, { frame, resolve, reject });
      this.#send(frame);
    });
  }

  #forget(r: Running, reason: string): void {
    if (!r.controller.signal.aborted) r.controller.abort(new Error(`cancelled (${reason})`));
    r.finished = true;
    this.#running.delete(r.id);
    for (const [id, p] of this.#outbox) {
      if (p.frame.attempt === r.id) {
        this.#outbox.delete(id);
        p.resolve(null);
      }
    }
    this.#maybeDone();
  }

  #maybeDone(): void {
    if (this.#draining && this.#running.size === 0 && this.#outbox.size === 0) {
      this.#stopped = true;
      this.#ws?.close();
      this.#done?.();
    }
  }
}
