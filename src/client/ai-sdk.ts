// `leash/ai-sdk`: the Vercel AI SDK's `useChat` on a leash server (SPEC §7).
//
//   const transport = new LeashChatTransport({ baseUrl: 'http://127.0.0.1:8787' });
//   const id = await transport.createChat();                  // a leash thread
//   useChat({ id, transport, messages: await transport.loadChat(id), resume: true });
//
// - useChat's chat id is the leash thread id. Thread ids are made by the server, so
//   a chat is created with `createChat()` (POST /api/threads); an unknown id fails
//   sendMessages with the server's 404 rather than creating a thread by surprise.
// - sendMessages starts a run of the last user message (POST /api/threads/:id/runs,
//   with an Idempotency-Key so a retry after a network error is the same run) and
//   follows it as the UI message stream (GET /api/tasks/:id/events?format=ai-sdk),
//   reconnecting quietly with Last-Event-ID after a network error.
// - Its abortSignal (useChat's `stop()`) cancels the task on the server with a
//   `keepalive` request; a Stop that comes before the run's answer is sent as soon as
//   the task id is known. Nothing else is a stop: a page unload, the returned stream
//   cancelled by its reader, a resume replaced by a newer one.
// - reconnectToStream replays the thread's answer in flight from its start (the
//   resumed message starts empty: `resumeStreamIsReplay`), or gives null.
// - loadChat gives the thread's history as UIMessages for useChat's `messages`,
//   without the answer in flight (the resumed stream brings it), a stopped answer
//   with its partial text and `metadata.status === 'cancelled'`.
//
// Only `import type` from 'ai': this works with the `ai` 5, 6 or 7 the app has.

import type { ChatTransport, UIMessage, UIMessageChunk } from 'ai';
import type { FetchLike } from './client.ts';
import { parseSse } from './sse.ts';

export interface LeashChatTransportOptions {
  /** The leash server, e.g. `http://127.0.0.1:8787` (same origin: `''`). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Model for the runs (default: the server's). */
  model?: string;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  fetch?: FetchLike;
  /** Reconnecting after a network error: first delay, longest delay, and how long to keep trying. */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number; giveUpAfterMs?: number };
}

/** `message.metadata` of an answer from leash (live stream and loadChat alike). */
export interface LeashMessageMetadata {
  taskId: string;
  status?: 'completed' | 'cancelled' | 'failed';
  /** True for an answer stopped before its end (its partial text is kept). */
  stopped?: boolean;
  cancelReason?: string;
}

interface WireMessage {
  id: string;
  role: string;
  content: string;
  status: 'complete' | 'streaming' | 'cancelled' | 'failed';
  task_id: string | null;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

const abortError = (): Error => new DOMException('The operation was aborted.', 'AbortError');

/** The message of a leash error body, or the status line. */
async function errorOf(res: Response, what: string): Promise<Error> {
  let message = `${what}: HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.message) message = `${what}: ${body.error.code ?? res.status}: ${body.error.message}`;
  } catch {
    // not JSON: the status line says enough
  }
  return Object.assign(new Error(message), { status: res.status });
}

export class LeashChatTransport<M extends UIMessage = UIMessage> implements ChatTransport<M> {
  /** A reconnect replays the answer from its start (ai ≥ 6 resets the message on its `start`). */
  readonly resumeStreamIsReplay = true;
  readonly #opts: LeashChatTransportOptions;
  readonly #base: string;
  readonly #fetch: FetchLike;
  /** Per chat: bumped by every send and resume, so an aborted resume can tell "replaced" from "stopped". */
  readonly #generation = new Map<string, number>();
  /** Per chat: the answer in flight that loadChat left out, for reconnectToStream. */
  readonly #inFlight = new Map<string, string>();

  constructor(opts: LeashChatTransportOptions) {
    this.#opts = opts;
    this.#base = opts.baseUrl.replace(/\/+$/, '');
    const f = opts.fetch;
    // A browser's fetch throws "Illegal invocation" when called as a method of another object.
    this.#fetch = f ?? ((input, init) => globalThis.fetch(input, init));
  }

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...this.#opts.headers,
      ...(this.#opts.apiKey !== undefined && { authorization: `Bearer ${this.#opts.apiKey}` }),
      ...extra,
    };
  }

  #bump(chatId: string): number {
    const g = (this.#generation.get(chatId) ?? 0) + 1;
    this.#generation.set(chatId, g);
    return g;
  }

  /** Creates a leash thread: its id is the chat id to give useChat. */
  async createChat(metadata: Record<string, unknown> = {}): Promise<string> {
    const res = await this.#fetch(`${this.#base}/api/threads`, {
      method: 'POST',
      headers: this.#headers({ 'content-type': 'application/json' }),
      body: JSON.stringify({ metadata }),
    });
    if (!res.ok) throw await errorOf(res, 'create chat');
    return ((await res.json()) as { id: string }).id;
  }

  /**
   * The thread's messages for useChat's `messages` (oldest first, at most `limit`):
   * without the answer in flight, which `resume: true` brings back from its start.
   */
  async loadChat(threadId: string, opts: { limit?: number } = {}): Promise<M[]> {
    const limit = opts.limit ?? 1000;
    const all: WireMessage[] = [];
    let cursor: string | null = null;
    do {
      const q = new URLSearchParams({ limit: String(Math.min(limit - all.length, 1000)) });
      if (cursor !== null) q.set('cursor', cursor);
      const res = await this.#fetch(`${this.#base}/api/threads/${encodeURIComponent(threadId)}/messages?${q}`, {
        headers: this.#headers(),
      });
      if (!res.ok) throw await errorOf(res, 'load chat');
      const page = (await res.json()) as { data: WireMessage[]; next_cursor: string | null };
      all.unshift(...page.data); // pages go back in time
      cursor = page.next_cursor;
    } while (cursor !== null && all.length < limit);

    this.#inFlight.delete(threadId);
    const out: M[] = [];
    for (const m of all) {
      if (m.role === 'assistant' && m.status === 'streaming') {
        if (m.task_id !== null) this.#inFlight.set(threadId, m.task_id);
        continue;
      }
      const role = m.role === 'user' || m.role === 'system' ? m.role : 'assistant';
      const metadata: LeashMessageMetadata | undefined =
        role === 'assistant' && m.task_id !== null
          ? {
              taskId: m.task_id,
              status: m.status === 'complete' ? 'completed' : m.status === 'streaming' ? undefined : m.status,
              ...(m.status === 'cancelled' && { stopped: true }),
            }
          : undefined;
      out.push({
        id: m.id,
        role,
        parts: m.content === '' ? [] : [{ type: 'text', text: m.content, state: 'done' }],
        ...(metadata !== undefined && { metadata }),
      } as unknown as M);
    }
    return out;
  }

  async sendMessages(options: {
    trigger: 'submit-message' | 'regenerate-message';
    chatId: string;
    messageId: string | undefined;
    messages: M[];
    abortSignal: AbortSignal | undefined;
  }): Promise<ReadableStream<UIMessageChunk>> {
    const { chatId, messages, abortSignal } = options;
    this.#bump(chatId);
    if (options.trigger === 'regenerate-message') {
      throw new Error('LeashChatTransport: regenerate is not supported; send the message again.');
    }
    const last = [...messages].reverse().find((m) => m.role === 'user');
    const content = (last?.parts ?? []).map((p) => (p.type === 'text' ? (p as { text: string }).text : '')).join('');
    if (content === '') throw new Error('LeashChatTransport: the last user message has no text.');
    if (abortSignal?.aborted) throw abortError();

    // Stop before the run's answer: remembered, sent once the task id is known.
    let taskId: string | null = null;
    let stopped = false;
    const onStop = (): void => {
      stopped = true;
      if (taskId !== null) this.#cancel(taskId);
    };
    abortSignal?.addEventListener('abort', onStop, { once: true });

    const key = `chat_${globalThis.crypto.randomUUID()}`;
    const body = JSON.stringify({ content, ...(this.#opts.model !== undefined && { model: this.#opts.model }) });
    let res: Response | null = null;
    // Not aborted by the signal: a run that exists must be known, to be cancelled.
    for (let attempt = 0; res === null; attempt++) {
      try {
        res = await this.#fetch(`${this.#base}/api/threads/${encodeURIComponent(chatId)}/runs`, {
          method: 'POST',
          headers: this.#headers({ 'content-type': 'application/json', 'idempotency-key': key }),
          body,
        });
      } catch (err) {
        if (attempt >= 4) throw err;
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
    if (!res.ok) {
      abortSignal?.removeEventListener('abort', onStop);
      throw await errorOf(res, 'start run');
    }
    taskId = ((await res.json()) as { id: string }).id;
    if (stopped) {
      this.#cancel(taskId);
      throw abortError();
    }
    return this.#follow(taskId, abortSignal);
  }

  async reconnectToStream(options: {
    chatId: string;
    abortSignal?: AbortSignal;
  }): Promise<ReadableStream<UIMessageChunk> | null> {
    const { chatId, abortSignal } = options;
    const generation = this.#bump(chatId);
    let taskId = this.#inFlight.get(chatId) ?? null;
    this.#inFlight.delete(chatId);
    if (taskId === null) {
      const q = new URLSearchParams({ thread_id: chatId, status: 'queued,running', type: 'chat', limit: '1' });
      const res = await this.#fetch(`${this.#base}/api/tasks?${q}`, {
        headers: this.#headers(),
        ...(abortSignal !== undefined && { signal: abortSignal }),
      });
      if (!res.ok) throw await errorOf(res, 'reconnect');
      taskId = ((await res.json()) as { data: { id: string }[] }).data[0]?.id ?? null;
    }
    if (taskId === null) return null;
    if (abortSignal?.aborted) return null;
    const id = taskId;
    // useChat aborts a resume both for stop() and when a newer resume replaces it (StrictMode's
    // second mount does that); the newer one calls us in the same tick, so look a tick later.
    const stop = new AbortController();
    abortSignal?.addEventListener(
      'abort',
      () =>
        setTimeout(() => {
          if (this.#generation.get(chatId) === generation) {
            this.#cancel(id);
            stop.abort();
          }
        }, 0),
      { once: true },
    );
    return this.#follow(id, stop.signal, abortSignal);
  }

  /** Asks the server to cancel the task; `keepalive` lets the request outlive the page. */
  #cancel(taskId: string): void {
    const send = (attempt: number): void => {
      this.#fetch(`${this.#base}/api/tasks/${encodeURIComponent(taskId)}/cancel`, {
        method: 'POST',
        keepalive: true,
        headers: this.#headers({ 'content-type': 'application/json' }),
        body: JSON.stringify({ reason: 'user' }),
      }).catch(() => {
        if (attempt < 3) setTimeout(() => send(attempt + 1), 250 * 2 ** attempt);
      });
    };
    send(0);
  }

  /**
   * The task's UI message stream, reconnecting with Last-Event-ID after a network error.
   * Chunks are passed on only once the frame that ends their event (with `id:`)
   * arrived, so a resume never repeats half an event. `stop` ends it (a Stop);
   * `detach` (an aborted resume) and the reader cancelling end only the reading.
   */
  #follow(taskId: string, stop?: AbortSignal, detach?: AbortSignal): ReadableStream<UIMessageChunk> {
    const ac = new AbortController();
    const end = (): void => ac.abort();
    stop?.addEventListener('abort', end, { once: true });
    detach?.addEventListener('abort', end, { once: true });
    const r = this.#opts.reconnect ?? {};
    const initialDelay = r.initialDelayMs ?? 250;
    const maxDelay = r.maxDelayMs ?? 5000;
    const giveUpAfter = r.giveUpAfterMs ?? 60_000;
    const url = `${this.#base}/api/tasks/${encodeURIComponent(taskId)}/events?format=ai-sdk`;
    let lastId: string | null = null;

    const pump = async (controller: ReadableStreamDefaultController<UIMessageChunk>): Promise<void> => {
      let attempt = 0;
      let failingSince: number | null = null;
      while (!ac.signal.aborted) {
        try {
          const res = await this.#fetch(url, {
            headers: this.#headers({
              accept: 'text/event-stream',
              ...(lastId !== null && { 'last-event-id': lastId }),
            }),
            signal: ac.signal,
          });
          if (!res.ok || res.body === null) {
            const err = await errorOf(res, 'follow answer');
            // 5xx, 408 and 429 pass; anything else will not get better by asking again.
            if (res.status < 500 && res.status !== 408 && res.status !== 429) throw Object.assign(err, { fatal: true });
            throw err;
          }
          let pending: UIMessageChunk[] = [];
          for await (const frame of parseSse(res.body)) {
            if (frame.data === '[DONE]') {
              for (const c of pending) controller.enqueue(c);
              controller.close();
              return;
            }
            pending.push(JSON.parse(frame.data) as UIMessageChunk);
            if (frame.id !== null) {
              for (const c of pending) controller.enqueue(c);
              pending = [];
              lastId = frame.id;
              attempt = 0;
              failingSince = null;
            }
          }
          // Ended without [DONE] (a server restarting): follow on from lastId.
        } catch (err) {
          if (ac.signal.aborted) break;
          if ((err as { fatal?: boolean }).fatal) {
            controller.error(err);
            return;
          }
        }
        failingSince ??= Date.now();
        if (Date.now() - failingSince > giveUpAfter) {
          controller.error(new Error(`lost the connection to leash for task ${taskId}`));
          return;
        }
        await sleep(Math.min(initialDelay * 2 ** attempt, maxDelay), ac.signal);
        attempt++;
      }
      try {
        controller.close();
      } catch {
        // the reader cancelled: nothing to close
      }
    };

    return new ReadableStream<UIMessageChunk>({
      start(controller) {
        void pump(controller);
      },
      cancel() {
        ac.abort();
      },
    });
  }
}
