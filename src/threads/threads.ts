// Conversations (SPEC.md §2) over the task runtime. A run stores the user message
// and a placeholder for the answer *before* the chat task exists, so the turn is in
// history whatever happens next. Runs of one thread never overlap: the store only
// claims a thread's next task once the previous one has really ended, which is
// what makes "a run right after a cancel sees the cancelled turn" hold.

import { LeashError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Runtime } from '../runtime/runtime.ts';
import type { CancelReason, Page, Task } from '../core/types.ts';
import { nowIso } from '../core/types.ts';
import { encodeCursor, pageStart } from '../store/paging.ts';
import type { Message, Store, Thread } from '../store/store.ts';
import { settleAnswers } from './settle.ts';
import { DEFAULT_MESSAGE_PAGE, MAX_MESSAGE_PAGE, type ThreadRunRequest } from '../core/wire/threads.ts';

export { MULTITASK_STRATEGIES, type MultitaskStrategy } from '../core/types.ts';

/** A run's request, as every surface (HTTP, WebSocket) parses it. */
export type RunRequest = ThreadRunRequest;

/** A page of a thread's messages, in conversation order; `next_cursor` pages back to older ones. */
export interface MessagePage extends Page<Message> {
  has_more: boolean;
}

export { DEFAULT_MESSAGE_PAGE, MAX_MESSAGE_PAGE } from '../core/wire/threads.ts';
/** Content characters per page, past which a page ends early (next_cursor goes on from there). */
export const MESSAGE_PAGE_CHARS = 4_000_000;
const PAGE_READ_CHUNK = 50;

export interface RunResult {
  task: Task;
  user_message: Message;
  assistant_message: Message;
  /** Runs that this one cancelled (interrupt / rollback). */
  cancelled_task_ids: string[];
}

export class Threads {
  readonly #runtime: Runtime;
  readonly #store: Store;
  /** Runs of one thread are started one after another on this node (per-thread mutex). */
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(runtime: Runtime) {
    this.#runtime = runtime;
    this.#store = runtime.store;
  }

  create(owner: string, metadata: Record<string, unknown> = {}): Promise<Thread> {
    return this.#store.createThread({ id: newId('thread'), owner, created_at: nowIso(), metadata });
  }

  get(id: string, owner: string): Promise<Thread | null> {
    return this.#store.getThread(id, owner);
  }

  list(owner: string, limit = 50, cursor?: string): Promise<Page<Thread>> {
    return this.#store.listThreads(owner, limit, cursor);
  }

  async delete(id: string, owner: string): Promise<void> {
    const thread = await this.#mustGet(id, owner);
    if (thread.status === 'busy') {
      throw new LeashError('thread_busy', `Thread ${id} has an active run; cancel it first.`);
    }
    await this.#store.deleteThread(id, owner);
  }

  /** Messages in order; an answer whose task already ended shows that task's final text and status. */
  async messages(id: string, owner: string): Promise<Message[]> {
    await this.#mustGet(id, owner);
    return this.repair(await this.#store.listMessages(id));
  }

  /**
   * The newest `limit` messages before `cursor` (none: the end of the thread), oldest
   * first. A thread's first page is its latest turns: what a chat view shows first.
   * A page also stops at MESSAGE_PAGE_CHARS of content (it always holds one message):
   * a thousand one-megabyte messages must not become one gigabyte answer.
   */
  async messagesPage(id: string, owner: string, limit = DEFAULT_MESSAGE_PAGE, cursor?: string): Promise<MessagePage> {
    await this.#mustGet(id, owner);
    const n = Math.min(MAX_MESSAGE_PAGE, Math.max(1, Math.floor(limit)));
    let before = pageStart('m', cursor);
    const picked: Message[] = []; // newest first
    let chars = 0;
    let more = false;
    // Read in small chunks: rows are loaded whole, and a page may stop early on size.
    read: for (;;) {
      const want = Math.min(PAGE_READ_CHUNK, n + 1 - picked.length);
      const rows = await this.#store.listRecentMessages(id, want, before);
      for (let i = rows.length - 1; i >= 0; i--) {
        const m = rows[i]!;
        if (picked.length === n || (picked.length > 0 && chars + m.content.length > MESSAGE_PAGE_CHARS)) {
          more = true;
          break read;
        }
        picked.push(m);
        chars += m.content.length;
      }
      if (rows.length < want) break;
      before = rows[0]!.seq;
    }
    const data = await this.repair(picked.reverse());
    return { data, next_cursor: more ? encodeCursor('m', data[0]!.seq) : null, has_more: more };
  }

  /** Settled answers; one still streaming shows the text so far (one task read per answer). */
  repair(messages: Message[]): Promise<Message[]> {
    return settleAnswers(this.#store, messages, (taskId) => this.#runtime.outputText(taskId));
  }

  /** Stops every active run of the thread with reason `interrupted` (in order with runs). Returns the stopped tasks. */
  async interrupt(threadId: string, owner: string): Promise<Task[]> {
    return this.#serialized(threadId, async () => {
      await this.#mustGet(threadId, owner);
      return this.#stopActive(threadId, owner, 'interrupted');
    });
  }

  async #stopActive(threadId: string, owner: string, reason: 'interrupted' | 'rollback'): Promise<Task[]> {
    const stopped: Task[] = [];
    for (const id of await this.#store.findActiveTaskIds({ owner, thread_id: threadId })) {
      // null: ended between the look-up and the cancel, nothing left to stop there.
      const r = await this.#runtime.cancel(id, owner, reason, { quietIfEnded: true });
      if (r !== null) stopped.push(r.task);
      if (reason === 'rollback') await this.#store.deleteMessagesOfTask(threadId, id);
    }
    return stopped;
  }

  /** `opts.cancelled`: see Runtime.create (a cancel that came with the run). */
  async run(
    threadId: string,
    owner: string,
    req: RunRequest,
    opts: { cancelled?: () => CancelReason | null } = {},
  ): Promise<RunResult> {
    // A model the caller may not name is refused before the run interrupts the active one.
    this.#runtime.models.check(req.model);
    return this.#serialized(threadId, async () => {
      await this.#mustGet(threadId, owner);
      const strategy = req.multitask ?? 'interrupt';
      let cancelled: string[] = [];
      if (strategy === 'reject') {
        const activeIds = await this.#store.findActiveTaskIds({ owner, thread_id: threadId });
        if (activeIds.length > 0) {
          throw new LeashError(
            'thread_busy',
            `Thread ${threadId} already has an active run (${activeIds.join(', ')}).`,
            {
              details: { active_task_ids: activeIds },
            },
          );
        }
      } else if (strategy === 'interrupt' || strategy === 'rollback') {
        cancelled = (
          await this.#stopActive(threadId, owner, strategy === 'interrupt' ? 'interrupted' : 'rollback')
        ).map((t) => t.id);
      }
      const taskId = newId('task');
      const createdAt = nowIso();
      const user = await this.#store.appendMessage({
        id: newId('msg'),
        thread_id: threadId,
        role: 'user',
        content: req.content,
        status: 'complete',
        task_id: taskId,
        created_at: createdAt,
      });
      const assistant = await this.#store.appendMessage({
        id: newId('msg'),
        thread_id: threadId,
        role: 'assistant',
        content: '',
        status: 'streaming',
        task_id: taskId,
        created_at: createdAt,
      });
      try {
        const { task } = await this.#runtime.create(
          owner,
          {
            id: taskId,
            type: 'chat',
            thread_id: threadId,
            input: {
              user_message_id: user.id,
              assistant_message_id: assistant.id,
              ...(req.model ? { model: req.model } : {}),
              ...(req.system ? { system: req.system } : {}),
              ...(req.max_tokens !== undefined && { max_tokens: req.max_tokens }),
              ...(req.temperature !== undefined && { temperature: req.temperature }),
            },
            ...(req.deadline_ms ? { deadline_ms: req.deadline_ms } : {}),
          },
          opts,
        );
        return { task, user_message: user, assistant_message: assistant, cancelled_task_ids: cancelled };
      } catch (e) {
        // The run never started (queue full, shutting down): the turn is not kept half-made.
        await this.#store.deleteMessagesOfTask(threadId, taskId);
        throw e;
      }
    });
  }

  async #mustGet(id: string, owner: string): Promise<Thread> {
    const t = await this.#store.getThread(id, owner);
    if (!t) throw new LeashError('not_found', `Thread ${id} not found.`);
    return t;
  }

  async #serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => {});
    this.#locks.set(key, tail);
    try {
      return await next;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }
}
