// The shell: header with the two views, the API key prompt when the server
// answers 401, and the current view from the URL.

import { useEffect, useState, type FormEvent } from 'react';
import { readStored, useApi } from './api.tsx';
import { ChatView, LAST_THREAD_KEY } from './chat/ChatView.tsx';
import { navigate, useRoute } from './router.ts';
import { TasksView } from './tasks/TasksView.tsx';

export function App() {
  const route = useRoute();
  const { needKey, client } = useApi();
  const [keyOpen, setKeyOpen] = useState(false);

  // `/` reopens the chat you were in (the URL wins when it names one).
  useEffect(() => {
    if (location.pathname === '/') {
      const last = readStored(LAST_THREAD_KEY);
      if (last) navigate({ view: 'chat', threadId: last }, { replace: true });
    }
  }, []);

  useEffect(() => {
    document.title = route.view === 'tasks' ? 'Tasks · leash' : 'Chat · leash';
  }, [route.view]);

  return (
    <div className="app">
      <header className="top">
        <a
          className="brand"
          href="/"
          onClick={(e) => {
            e.preventDefault();
            navigate({ view: 'chat', threadId: readStored(LAST_THREAD_KEY) });
          }}
        >
          <span className="logo" aria-hidden="true" />
          leash
        </a>
        <nav aria-label="Views">
          <a
            href="/"
            aria-current={route.view === 'chat' ? 'page' : undefined}
            onClick={(e) => {
              e.preventDefault();
              navigate({ view: 'chat', threadId: readStored(LAST_THREAD_KEY) });
            }}
          >
            Chat
          </a>
          <a
            href="/tasks"
            aria-current={route.view === 'tasks' ? 'page' : undefined}
            onClick={(e) => {
              e.preventDefault();
              navigate({ view: 'tasks', taskId: null });
            }}
          >
            Tasks
          </a>
        </nav>
        <span className="spacer" />
        <button type="button" className="ghost small-button" onClick={() => setKeyOpen(true)}>
          {client.apiKey ? 'API key ✓' : 'API key'}
        </button>
      </header>
      {(needKey || keyOpen) && <KeyPrompt required={needKey} onDone={() => setKeyOpen(false)} />}
      <main>
        {route.view === 'tasks' ? <TasksView taskId={route.taskId} /> : <ChatView threadId={route.threadId} />}
      </main>
    </div>
  );
}

function KeyPrompt({ required, onDone }: { required: boolean; onDone(): void }) {
  const { setKey, client } = useApi();
  const [value, setValue] = useState('');
  const submit = (e: FormEvent): void => {
    e.preventDefault();
    setKey(value);
    onDone();
  };
  return (
    <div className="key-prompt" role="dialog" aria-modal="false" aria-labelledby="key-title">
      <form onSubmit={submit} className="card">
        <h2 id="key-title">{required ? 'This server needs an API key' : 'API key'}</h2>
        <p className="muted small">
          {required && client.apiKey ? 'The key you gave was not accepted. ' : ''}
          It is sent as <code>Authorization: Bearer …</code> and kept in this browser only.
        </p>
        <label htmlFor="api-key">API key</label>
        <div className="row">
          <input
            id="api-key"
            type="password"
            autoComplete="off"
            autoFocus
            value={value}
            onChange={(e) => setValue(e.target.value)}
          />
          <button type="submit" className="primary" disabled={value.trim() === ''}>
            Save
          </button>
          {!required && (
            <>
              {client.apiKey && (
                <button
                  type="button"
                  className="ghost"
                  onClick={() => {
                    setKey(null);
                    onDone();
                  }}
                >
                  Forget key
                </button>
              )}
              <button type="button" className="ghost" onClick={onDone}>
                Close
              </button>
            </>
          )}
        </div>
      </form>
    </div>
  );
}
