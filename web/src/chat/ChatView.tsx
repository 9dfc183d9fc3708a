// The chat: threads on the side, the conversation, a composer. Answers stream in
// from their task's events; Stop (or Esc) cancels the running answer and shows
// "stopping…" until the server confirms; a message sent while an answer streams
// follows the chosen multitask strategy (interrupt by default).

import { useCallback, useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { ConflictError, type Message, type MultitaskStrategy, type Thread } from '../../../src/client/index.ts';
import { readStored, useApi, writeStored } from '../api.tsx';
import { ModelSelect, SimulatedNotice, useDefaultModel, useModels } from '../models.tsx';
import { navigate } from '../router.ts';
import { isOver, useTaskStreams, type LiveAnswer } from './useTaskStreams.ts';

const STRATEGIES: Array<{ value: MultitaskStrategy; label: string }> = [
  { value: 'interrupt', label: 'Interrupt the answer' },
  { value: 'enqueue', label: 'Queue after it' },
  { value: 'reject', label: 'Refuse while busy' },
  { value: 'rollback', label: 'Roll back the turn' },
];

const REASONS: Record<string, string> = {
  user: '',
  interrupted: 'interrupted by a new message',
  rollback: 'rolled back',
  disconnect: 'client disconnected',
  deadline: 'deadline reached',
  shutdown: 'server shut down',
  batch: 'batch cancel',
};

export const LAST_THREAD_KEY = 'leash.thread';
/** Messages per page read from the server. */
const PAGE_SIZE = 200;

const titleOf = (t: Thread): string =>
  typeof t.metadata?.title === 'string' && t.metadata.title !== '' ? t.metadata.title : 'Untitled chat';

export function ChatView({ threadId }: { threadId: string | null }) {
  const { client, version, describe } = useApi();
  const models = useModels();
  const defaultModel = useDefaultModel();
  const [threads, setThreads] = useState<Thread[]>([]);
  const [messages, setMessages] = useState<Message[]>([]);
  const [pending, setPending] = useState<string | null>(null);
  const [draft, setDraft] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [model, setModel] = useState(() => readStored('leash.model') ?? '');
  const [strategy, setStrategy] = useState<MultitaskStrategy>(
    () => (readStored('leash.multitask') as MultitaskStrategy | null) ?? 'interrupt',
  );
  const [showThreads, setShowThreads] = useState(false);
  const loadSeq = useRef(0);
  const bottom = useRef<HTMLDivElement>(null);
  const input = useRef<HTMLTextAreaElement>(null);

  const show = useCallback(
    (err: unknown) => {
      const m = describe(err);
      if (m !== null) setError(m);
    },
    [describe],
  );

  const loadThreads = useCallback(async () => {
    try {
      const page = await client.threads.list({ limit: 100 });
      setThreads(page.data);
    } catch (err) {
      show(err);
    }
  }, [client, show]);

  /** Cursor to the messages older than those shown (null: the thread's start is shown). */
  const [olderCursor, setOlderCursor] = useState<string | null>(null);
  /** Seq of the oldest message shown: a refresh reads back down to it, so nothing shown goes missing. */
  const oldestShown = useRef<number | null>(null);

  // The newest page of a thread (a long one is not read whole on every refresh); earlier
  // pages on demand ("Show earlier messages").
  const loadMessages = useCallback(
    async (id: string) => {
      const seq = ++loadSeq.current;
      try {
        const floor = oldestShown.current;
        let list: Message[] = [];
        let cursor: string | undefined;
        for (;;) {
          const page = await client.threads.messagesPage(id, {
            limit: PAGE_SIZE,
            ...(cursor !== undefined && { cursor }),
          });
          list = [...page.data, ...list];
          cursor = page.next_cursor ?? undefined;
          if (cursor === undefined || floor === null || (page.data[0]?.seq ?? 0) <= floor) break;
        }
        if (seq === loadSeq.current) {
          setMessages(list);
          setOlderCursor(cursor ?? null);
          oldestShown.current = list[0]?.seq ?? null;
        }
        return list;
      } catch (err) {
        if (seq === loadSeq.current) show(err);
        return null;
      }
    },
    [client, show],
  );

  const loadEarlier = useCallback(async () => {
    if (threadId === null || olderCursor === null) return;
    const seq = loadSeq.current;
    try {
      const page = await client.threads.messagesPage(threadId, { limit: PAGE_SIZE, cursor: olderCursor });
      if (seq !== loadSeq.current) return; // a refresh or another thread meanwhile
      setMessages((ms) => [...page.data.filter((m) => !ms.some((x) => x.id === m.id)), ...ms]);
      setOlderCursor(page.next_cursor ?? null);
      oldestShown.current = page.data[0]?.seq ?? oldestShown.current;
    } catch (err) {
      show(err);
    }
  }, [client, show, threadId, olderCursor]);

  const { live, follow, markStopping, reset } = useTaskStreams(client, () => {
    if (threadId !== null) void loadMessages(threadId);
    void loadThreads();
  });

  useEffect(() => {
    void loadThreads();
  }, [loadThreads, version]);

  // Entering a thread: read its messages, then follow every answer still streaming (from seq 0).
  useEffect(() => {
    reset();
    setMessages([]);
    setOlderCursor(null);
    oldestShown.current = null;
    setError(null);
    setNotice(null);
    // `pending` stays: a first message creates its thread and navigates there while it is being sent.
    if (threadId === null) return;
    writeStored(LAST_THREAD_KEY, threadId);
    void loadMessages(threadId);
  }, [threadId, version, reset, loadMessages]);

  useEffect(() => {
    for (const m of messages) {
      if (m.role === 'assistant' && m.status === 'streaming' && m.task_id) follow(m.task_id);
    }
  }, [messages, follow]);

  const active = messages
    .filter((m) => m.role === 'assistant' && m.task_id)
    .map((m) => ({ m, l: live[m.task_id!] }))
    .filter(({ m, l }) => (l ? !isOver(l) : m.status === 'streaming'))
    .map(({ m }) => m.task_id!);
  const busy = active.length > 0;
  const stopping = busy && active.every((id) => live[id]?.stopping);

  const activeRef = useRef(active);
  activeRef.current = active;
  const stop = useCallback(async () => {
    for (const id of activeRef.current) {
      markStopping(id);
      try {
        await client.tasks.cancel(id, { reason: 'user' });
      } catch (err) {
        // Ended on its own meanwhile: nothing to stop.
        if (!(err instanceof ConflictError && err.code === 'task_ended')) show(err);
      }
    }
  }, [client, markStopping, show]);

  useEffect(() => {
    const onKey = (e: globalThis.KeyboardEvent): void => {
      if (e.key === 'Escape' && showThreads) {
        setShowThreads(false);
        return;
      }
      if (e.key === 'Escape' && busy && !e.defaultPrevented) {
        e.preventDefault();
        void stop();
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [busy, stop, showThreads]);

  // Keep the newest text in view while the reader is at the bottom.
  const lastText = messages.length > 0 ? textOf(messages[messages.length - 1]!, live) : '';
  useEffect(() => {
    const el = bottom.current;
    if (!el) return;
    const scroller = el.parentElement;
    if (scroller && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 160) {
      el.scrollIntoView({ block: 'end' });
    }
  }, [messages.length, lastText, pending]);

  async function send(e?: FormEvent): Promise<void> {
    e?.preventDefault();
    const content = draft.trim();
    if (content === '') return;
    setError(null);
    setNotice(null);
    setPending(content);
    setDraft('');
    try {
      let id = threadId;
      if (id === null) {
        const t = await client.threads.create({ metadata: { title: content.slice(0, 60) } });
        id = t.id;
        setThreads((ts) => [t, ...ts]);
        navigate({ view: 'chat', threadId: id });
      }
      const run = await client.threads.run(id, {
        content,
        ...(model !== '' && { model }),
        multitask: strategy,
      });
      await loadMessages(id);
      follow(run.id);
      void loadThreads();
    } catch (err) {
      if (err instanceof ConflictError && err.code === 'thread_busy') {
        setNotice('An answer is still streaming. Stop it first, or pick another strategy for new messages.');
      } else show(err);
      setDraft(content);
    } finally {
      setPending(null);
      input.current?.focus();
    }
  }

  function onComposerKey(e: KeyboardEvent<HTMLTextAreaElement>): void {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void send();
    }
  }

  async function removeThread(t: Thread): Promise<void> {
    try {
      await client.threads.delete(t.id);
      setThreads((ts) => ts.filter((x) => x.id !== t.id));
      if (t.id === threadId) {
        writeStored(LAST_THREAD_KEY, null);
        navigate({ view: 'chat', threadId: null });
      }
    } catch (err) {
      if (err instanceof ConflictError) setNotice('That chat has an answer streaming: stop it first.');
      else show(err);
    }
  }

  return (
    <div className="chat">
      <aside className={`threads${showThreads ? ' open' : ''}`} aria-label="Chats">
        <button
          type="button"
          className="primary new-chat"
          onClick={() => {
            setShowThreads(false);
            writeStored(LAST_THREAD_KEY, null);
            navigate({ view: 'chat', threadId: null });
            input.current?.focus();
          }}
        >
          + New chat
        </button>
        <ul>
          {threads.map((t) => (
            <li key={t.id} className={t.id === threadId ? 'current' : ''}>
              <a
                href={`/chat/${t.id}`}
                aria-current={t.id === threadId ? 'page' : undefined}
                onClick={(e) => {
                  e.preventDefault();
                  setShowThreads(false);
                  navigate({ view: 'chat', threadId: t.id });
                }}
              >
                <span className="thread-title">{titleOf(t)}</span>
                {t.status === 'busy' && <span className="dot" title="answering" aria-label="answering" />}
              </a>
              <button
                type="button"
                className="icon"
                aria-label={`Delete ${titleOf(t)}`}
                onClick={() => void removeThread(t)}
              >
                ×
              </button>
            </li>
          ))}
          {threads.length === 0 && <li className="muted empty">No chats yet.</li>}
        </ul>
      </aside>

      <section className="conversation" aria-label="Conversation">
        <div className="conversation-bar">
          <button
            type="button"
            className="ghost threads-toggle"
            onClick={() => setShowThreads((v) => !v)}
            aria-expanded={showThreads}
          >
            ☰ Chats
          </button>
          <span className="conversation-title">
            {threadId ? titleOf(threads.find((t) => t.id === threadId) ?? ({ metadata: {} } as Thread)) : 'New chat'}
          </span>
        </div>

        <div className="messages" role="log" aria-live="polite" aria-busy={busy}>
          {messages.length === 0 && pending === null && (
            <div className="welcome">
              <h2>Ask anything.</h2>
              <p className="muted">
                Answers stream in as they are written. Press <kbd>Esc</kbd> or <b>Stop</b> to stop one: the model call
                is cancelled on the server and the partial answer stays in the conversation.
              </p>
              <SimulatedNotice model={model !== '' ? model : defaultModel} />
            </div>
          )}
          {olderCursor !== null && (
            <button type="button" className="ghost load-earlier" onClick={() => void loadEarlier()}>
              Show earlier messages
            </button>
          )}
          {messages.map((m) => (
            <MessageView key={m.id} m={m} live={m.task_id ? live[m.task_id] : undefined} />
          ))}
          {pending !== null && (
            <div className="msg user pending" data-role="user">
              <div className="bubble">{pending}</div>
            </div>
          )}
          <div ref={bottom} />
        </div>

        {(error || notice) && (
          <div className={error ? 'alert error' : 'alert'} role={error ? 'alert' : 'status'}>
            {error ?? notice}
            <button
              type="button"
              className="icon"
              aria-label="Dismiss"
              onClick={() => (setError(null), setNotice(null))}
            >
              ×
            </button>
          </div>
        )}

        <form className="composer" onSubmit={(e) => void send(e)}>
          <label className="sr-only" htmlFor="composer-input">
            Message
          </label>
          <textarea
            id="composer-input"
            ref={input}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={onComposerKey}
            placeholder={
              busy ? 'Type to interrupt…  (Enter to send)' : 'Message  (Enter to send, Shift+Enter for a new line)'
            }
            rows={2}
            autoFocus
          />
          <div className="composer-row">
            <label>
              <span className="sr-only">Model</span>
              <ModelSelect
                value={model}
                models={models}
                defaultModel={defaultModel}
                onChange={(v) => {
                  setModel(v);
                  writeStored('leash.model', v);
                }}
              />
            </label>
            <label title="What a message sent while an answer streams does">
              <span className="sr-only">While answering</span>
              <select
                aria-label="While answering"
                value={strategy}
                onChange={(e) => {
                  const v = e.target.value as MultitaskStrategy;
                  setStrategy(v);
                  writeStored('leash.multitask', v);
                }}
              >
                {STRATEGIES.map((s) => (
                  <option key={s.value} value={s.value}>
                    {s.label}
                  </option>
                ))}
              </select>
            </label>
            <span className="spacer" />
            {busy && (
              <button
                type="button"
                className="stop"
                onClick={() => void stop()}
                disabled={stopping}
                aria-keyshortcuts="Escape"
              >
                {stopping ? 'Stopping…' : '■ Stop'}
              </button>
            )}
            <button type="submit" className="primary" disabled={draft.trim() === ''}>
              Send
            </button>
          </div>
        </form>
      </section>
    </div>
  );
}

function textOf(m: Message, live: Record<string, LiveAnswer>): string {
  return answerText(m, m.task_id ? live[m.task_id] : undefined);
}

/**
 * The stored text (read when the page loaded) and the stream's text (rebuilt from
 * seq 0) are both prefixes of the same answer: show the longer. Showing the stream's
 * text as soon as its first event arrived was the "empty bubble after a reload"
 * flake: the replay starts with `task.queued`/`task.started`, which carry no text,
 * so until its deltas caught up the bubble went blank ("thinking…") or shorter.
 */
function answerText(m: Message, l: LiveAnswer | undefined): string {
  if (m.role !== 'assistant' || !l || l.seq === 0) return m.content;
  return l.text.length >= m.content.length ? l.text : m.content;
}

function MessageView({ m, live }: { m: Message; live: LiveAnswer | undefined }) {
  if (m.role === 'system') return null;
  const text = answerText(m, live);
  let status: string = m.status;
  if (m.role === 'assistant' && live && live.seq > 0) {
    // Task statuses → message statuses (completed → complete).
    status =
      live.status === 'queued' || live.status === 'running'
        ? 'streaming'
        : live.status === 'completed'
          ? 'complete'
          : live.status;
  }
  const stopping = status === 'streaming' && live?.stopping === true;
  const reason = live?.reason ? REASONS[live.reason] : '';
  const waiting = status === 'streaming' && text === '';
  return (
    <div className={`msg ${m.role} ${status}`} data-role={m.role} data-status={status} data-task-id={m.task_id ?? ''}>
      <div className="bubble">
        {waiting ? (
          <span className="muted">{live?.status === 'queued' ? 'waiting to start…' : 'thinking…'}</span>
        ) : (
          <span className="text">{text}</span>
        )}
        {status === 'streaming' && !stopping && <span className="cursor" aria-hidden="true" />}
        {status === 'cancelled' && text === '' && <span className="muted">(stopped before any text)</span>}
      </div>
      {m.role === 'assistant' && (stopping || status === 'cancelled' || status === 'failed' || live?.error) && (
        <div className="meta">
          {stopping && <span className="badge stopping">stopping…</span>}
          {status === 'cancelled' && (
            <span className="badge stopped" title="This answer was cut short; the model sees it marked as such.">
              stopped{reason ? ` · ${reason}` : ''}
            </span>
          )}
          {status === 'failed' && <span className="badge failed">failed{live?.error ? `: ${live.error}` : ''}</span>}
          {status === 'streaming' && live?.error && (
            <span className="badge failed">{live.error} (reload to retry)</span>
          )}
        </div>
      )}
    </div>
  );
}
