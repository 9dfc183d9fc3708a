// The state and behaviour of `leash chat`, apart from Ink: what is on screen, what
// each key does, and the runs and cancels it sends. The Ink view (ui/chat-app.ts)
// renders snapshots and forwards keys.
//
// Screen model: `entries` are finished lines, only ever appended (Ink's <Static>
// writes each once, so the conversation scrolls like ordinary terminal output);
// the live part under them is the answer row being written, the line being typed
// and the status line. A streamed answer is cut into rows as it arrives, and each
// finished row becomes an entry at once.
//
// The server is the source of truth: when an answer ends, the text kept is the
// server's (`result.text`, or `output_text` of a cancelled task), so the screen
// shows what the thread stores and the model will see next turn.

import { ConflictError } from '../client/index.ts';
import type { CancelReason, LeashClient, Message } from '../client/index.ts';
import { RowSplitter } from './rows.ts';

export type EntryKind = 'user' | 'answer' | 'mark' | 'note' | 'error';

export interface Entry {
  /** Unique, in order: React's key. */
  id: number;
  kind: EntryKind;
  text: string;
  tone?: 'cancelled' | 'failed';
}

export interface LiveView {
  taskId: string;
  /** The answer row still being written. */
  tail: string;
  /** waiting: no text yet · streaming · stopping: a cancel is on its way (nothing more is shown). */
  phase: 'waiting' | 'streaming' | 'stopping';
  /** Text deltas received (≈ tokens). */
  deltas: number;
}

export interface ChatSnapshot {
  entries: readonly Entry[];
  live: LiveView | null;
  /** A sent line waiting for its run to start (or for the answer it interrupts to settle). */
  pendingUser: string | null;
  input: string;
  threadId: string | null;
  /** The model asked for with --model, or the one the last answer reported; null: the server's default. */
  model: string | null;
  /** Sum of the thread's usage as the server counted it. */
  tokens: { input: number; output: number };
  notice: string | null;
  /** Set when the chat is over; the view exits. */
  exitCode: number | null;
}

/** Marks of a cut-short answer (the docs and tests rely on the `[cut short` prefix). */
export function cutShortMark(reason: CancelReason | null): string {
  if (reason === null) return '[cut short]';
  if (reason === 'user') return '[cut short: stopped]';
  if (reason === 'interrupted') return '[cut short: interrupted by your next message]';
  return `[cut short: ${reason}]`;
}

export interface ChatSessionOptions {
  client: LeashClient;
  threadId?: string | null;
  model?: string | null;
  /** Terminal columns. */
  width: number;
  /** One sentence for an error (the CLI's explain()). */
  describeError: (err: unknown) => string;
  /** Second Ctrl+C within this many ms quits. Default 2000. */
  quitWindowMs?: number;
  /** How long to wait for an interrupted or cancelled answer's last event. Default 5000. */
  settleMs?: number;
}

interface Ending {
  text: string;
  mark: string | null;
  tone?: 'cancelled' | 'failed';
}

/** One answer being streamed. */
class LiveAnswer {
  readonly taskId: string;
  readonly splitter: RowSplitter;
  readonly abort = new AbortController();
  /** Everything the stream delivered. */
  received = '';
  /** What is on screen (committed rows + tail); a prefix of `received` unless the server says otherwise. */
  shown = '';
  frozen = false;
  phase: LiveView['phase'] = 'waiting';
  deltas = 0;
  done: Promise<void> = Promise.resolve();

  constructor(taskId: string, width: number) {
    this.taskId = taskId;
    this.splitter = new RowSplitter(width);
  }
}

const resolveWithin = (p: Promise<unknown>, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve(true);
      },
      () => {
        clearTimeout(t);
        resolve(true);
      },
    );
  });

export class ChatSession {
  readonly #client: LeashClient;
  readonly #describe: (err: unknown) => string;
  readonly #askedModel: string | null;
  readonly #quitWindowMs: number;
  readonly #settleMs: number;
  #width: number;
  #s: ChatSnapshot;
  #nextId = 1;
  #live: LiveAnswer | null = null;
  #quitArmed: ReturnType<typeof setTimeout> | null = null;
  #quitting: Promise<void> | null = null;
  readonly #listeners = new Set<() => void>();

  constructor(o: ChatSessionOptions) {
    this.#client = o.client;
    this.#describe = o.describeError;
    this.#askedModel = o.model ?? null;
    this.#quitWindowMs = o.quitWindowMs ?? 2000;
    this.#settleMs = o.settleMs ?? 5000;
    this.#width = o.width;
    this.#s = {
      entries: [],
      live: null,
      pendingUser: null,
      input: '',
      threadId: o.threadId ?? null,
      model: this.#askedModel,
      tokens: { input: 0, output: 0 },
      notice: null,
      exitCode: null,
    };
  }

  // ---- store (useSyncExternalStore) ----

  subscribe = (fn: () => void): (() => void) => {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  };

  getSnapshot = (): ChatSnapshot => this.#s;

  #set(patch: Partial<ChatSnapshot>, add: Array<Omit<Entry, 'id'>> = []): void {
    const entries =
      add.length === 0 ? this.#s.entries : [...this.#s.entries, ...add.map((e) => ({ ...e, id: this.#nextId++ }))];
    this.#s = { ...this.#s, ...patch, entries };
    for (const fn of this.#listeners) fn();
  }

  #liveView(l: LiveAnswer | null): LiveView | null {
    return l === null ? null : { taskId: l.taskId, tail: l.splitter.tail, phase: l.phase, deltas: l.deltas };
  }

  /** Rows of an answer are indented by two columns, and one column is kept free (some terminals wrap on the last one). */
  #rowWidth(): number {
    return Math.max(20, this.#width - 3);
  }

  setWidth(columns: number): void {
    if (Number.isFinite(columns) && columns > 0) this.#width = columns;
  }

  /** The task of the answer being streamed, if any. */
  get activeTaskId(): string | null {
    return this.#live?.taskId ?? null;
  }

  // ---- start ----

  /** Shows the thread's history; an answer still being written is followed live. */
  loadHistory(messages: Message[]): void {
    const add: Array<Omit<Entry, 'id'>> = [];
    const last = messages.at(-1);
    const attach = last?.role === 'assistant' && last.status === 'streaming' && last.task_id !== null ? last : null;
    for (const m of messages) {
      if (m === attach || m.role === 'system') continue;
      if (m.role === 'user') {
        add.push({ kind: 'user', text: m.content });
        continue;
      }
      if (m.content !== '') add.push({ kind: 'answer', text: m.content });
      if (m.status === 'cancelled') add.push({ kind: 'mark', text: cutShortMark(null), tone: 'cancelled' });
      else if (m.status === 'failed') add.push({ kind: 'mark', text: '[failed]', tone: 'failed' });
      else if (m.status === 'streaming') add.push({ kind: 'mark', text: '[still being written]', tone: 'cancelled' });
    }
    this.#set({ tokens: sumUsage(messages) }, add);
    if (attach?.task_id) this.#follow(attach.task_id);
  }

  // ---- typing ----

  type(text: string): void {
    if (this.#s.exitCode !== null) return;
    // Pasted newlines become spaces: Enter is the only way to send.
    const clean = [...text.replace(/\r\n?|\n/g, ' ')].filter((ch) => ch >= ' ' && ch !== '\x7f').join('');
    if (clean !== '') this.#set({ input: this.#s.input + clean });
  }

  backspace(): void {
    const chars = [...this.#s.input];
    chars.pop();
    this.#set({ input: chars.join('') });
  }

  clearLine(): void {
    this.#set({ input: '' });
  }

  // ---- keys with effects ----

  /** Enter: sends the line. While an answer streams, the new run interrupts it (multitask `interrupt`). */
  async submit(): Promise<void> {
    const content = this.#s.input.trim();
    if (content === '' || this.#s.exitCode !== null || this.#quitting !== null) return;
    if (content === '/quit' || content === '/exit') {
      this.#set({ input: '' });
      return this.quit();
    }
    if (this.#s.pendingUser !== null) return; // the previous line is still being sent; keep this one
    const prev = this.#live;
    if (prev !== null) this.#freeze(prev);
    this.#set({ input: '', pendingUser: content, notice: null });
    try {
      let threadId = this.#s.threadId;
      if (threadId === null) {
        threadId = (await this.#client.threads.create({ metadata: { client: 'leash chat' } })).id;
        this.#set({ threadId });
      }
      const run = await this.#client.threads.run(threadId, {
        content,
        multitask: 'interrupt',
        ...(this.#askedModel !== null && { model: this.#askedModel }),
      });
      // The server cancelled the answer we interrupted; its last event (with the
      // text it kept) comes next, so it is written above this line.
      if (prev !== null) await this.#settle(prev);
      this.#set({ pendingUser: null }, [{ kind: 'user', text: content }]);
      this.#follow(run.id);
    } catch (err) {
      // Nothing was started: give the line back, and let the old answer go on.
      if (prev !== null && this.#live === prev) this.#unfreeze(prev);
      this.#set({ pendingUser: null, input: content }, [{ kind: 'error', text: this.#describe(err) }]);
    }
  }

  /** Esc: stops the answer now. The server cancels its task; the partial answer stays, marked. */
  async stop(): Promise<void> {
    const live = this.#live;
    if (live === null || live.frozen) return;
    this.#freeze(live);
    try {
      await this.#client.tasks.cancel(live.taskId, { reason: 'user' });
    } catch (err) {
      // Ended just before: its terminal event says how, nothing to add.
      if (err instanceof ConflictError) return;
      if (this.#live === live) this.#unfreeze(live);
      this.#set({}, [{ kind: 'error', text: `Could not stop the answer: ${this.#describe(err)}` }]);
    }
  }

  /** Ctrl+C: stops the answer (or clears the line); a second one within the window quits. */
  ctrlC(): void {
    if (this.#quitArmed !== null) {
      void this.quit();
      return;
    }
    if (this.#live !== null && !this.#live.frozen) void this.stop();
    else if (this.#s.input !== '') this.clearLine();
    this.#quitArmed = setTimeout(() => {
      this.#quitArmed = null;
      if (this.#s.notice === QUIT_NOTICE) this.#set({ notice: null });
    }, this.#quitWindowMs);
    this.#quitArmed.unref?.(); // a forgotten notice must not keep the process alive
    this.#set({ notice: QUIT_NOTICE });
  }

  /** Ctrl+D: quits on an empty line. */
  ctrlD(): void {
    if (this.#s.input === '') void this.quit();
  }

  /** Ends the chat: an answer still streaming is cancelled first (the task must not outlive its reader). */
  quit(): Promise<void> {
    this.#quitting ??= (async () => {
      if (this.#quitArmed !== null) clearTimeout(this.#quitArmed);
      this.#quitArmed = null;
      const live = this.#live;
      if (live !== null) {
        await this.stop();
        await this.#settle(live);
      }
      const id = this.#s.threadId;
      this.#set(
        { notice: null, exitCode: 0 },
        id === null ? [] : [{ kind: 'note', text: `Thread ${id}: continue with \`leash chat --thread ${id}\`` }],
      );
    })();
    return this.#quitting;
  }

  // ---- following an answer ----

  /** Waits for an answer's last event; past settleMs, stops reading it (it is then marked [cut short]). */
  async #settle(live: LiveAnswer): Promise<void> {
    if (await resolveWithin(live.done, this.#settleMs)) return;
    live.abort.abort();
    await live.done;
  }

  #freeze(live: LiveAnswer): void {
    live.frozen = true;
    live.phase = 'stopping';
    if (this.#live === live) this.#set({ live: this.#liveView(live) });
  }

  /** Back to streaming, showing what arrived meanwhile. */
  #unfreeze(live: LiveAnswer): void {
    live.frozen = false;
    live.phase = live.received === '' ? 'waiting' : 'streaming';
    this.#show(live, live.received.startsWith(live.shown) ? live.received.slice(live.shown.length) : '');
  }

  #show(live: LiveAnswer, text: string): void {
    live.shown += text;
    const rows = live.splitter.push(text);
    if (this.#live !== live) return;
    this.#set(
      { live: this.#liveView(live) },
      rows.map((r) => ({ kind: 'answer' as const, text: r })),
    );
  }

  #follow(taskId: string): void {
    const live = new LiveAnswer(taskId, this.#rowWidth());
    this.#live = live;
    this.#set({ live: this.#liveView(live) });
    live.done = this.#consume(live);
  }

  async #consume(live: LiveAnswer): Promise<void> {
    let end: Ending | null = null;
    try {
      for await (const ev of this.#client.tasks.events(live.taskId, { signal: live.abort.signal })) {
        switch (ev.type) {
          case 'output.delta':
            live.received += ev.data.text;
            live.deltas++;
            if (live.frozen) {
              this.#set({ live: this.#liveView(live) });
            } else {
              live.phase = 'streaming';
              this.#show(live, ev.data.text);
            }
            break;
          case 'task.cancelling':
            this.#freeze(live);
            break;
          case 'task.completed': {
            const r = (ev.data.result ?? {}) as { text?: unknown; model?: unknown };
            if (typeof r.model === 'string' && this.#askedModel === null) this.#set({ model: r.model });
            end = { text: typeof r.text === 'string' ? r.text : live.received, mark: null };
            break;
          }
          case 'task.cancelled':
            end = { text: ev.data.output_text, mark: cutShortMark(ev.data.reason), tone: 'cancelled' };
            break;
          case 'task.failed':
            end = { text: live.received, mark: `[failed: ${ev.data.error.message}]`, tone: 'failed' };
            break;
          default:
            break;
        }
      }
      end ??= { text: live.received, mark: '[the answer stream ended early]', tone: 'failed' };
    } catch (err) {
      end = live.abort.signal.aborted
        ? { text: live.shown, mark: cutShortMark(null), tone: 'cancelled' }
        : { text: live.received, mark: `[lost the answer: ${this.#describe(err)}]`, tone: 'failed' };
    }
    this.#finish(live, end);
  }

  /** Writes the rest of the answer as the server kept it, then its mark, and leaves the live area. */
  #finish(live: LiveAnswer, end: Ending): void {
    const rest = end.text.startsWith(live.shown) ? end.text.slice(live.shown.length) : '';
    const rows = [...live.splitter.push(rest), ...live.splitter.flush()];
    const add: Array<Omit<Entry, 'id'>> = rows.map((r) => ({ kind: 'answer' as const, text: r }));
    if (end.mark !== null) add.push({ kind: 'mark', text: end.mark, ...(end.tone && { tone: end.tone }) });
    const current = this.#live === live;
    if (current) this.#live = null;
    this.#set(current ? { live: null } : {}, add);
    void this.#refreshTokens();
  }

  async #refreshTokens(): Promise<void> {
    const id = this.#s.threadId;
    if (id === null) return;
    try {
      this.#set({ tokens: sumUsage(await this.#client.threads.messages(id)) });
    } catch {
      // Only the status line: a failure here shows up on the next real call.
    }
  }
}

const QUIT_NOTICE = 'Press Ctrl+C again to quit.';

function sumUsage(messages: Message[]): { input: number; output: number } {
  let input = 0;
  let output = 0;
  for (const m of messages) {
    input += m.usage?.input_tokens ?? 0;
    output += m.usage?.output_tokens ?? 0;
  }
  return { input, output };
}
