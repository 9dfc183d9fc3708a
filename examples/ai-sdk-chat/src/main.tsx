// useChat on leash: the chat id is a leash thread (kept in the URL, so a reload
// comes back to it), its history comes from loadChat, and `resume: true` brings
// back an answer still streaming. Stop cancels the answer on the server.
import { useChat } from '@ai-sdk/react';
import { LeashChatTransport, type LeashMessageMetadata } from 'leash/ai-sdk';
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';

const transport = new LeashChatTransport({ baseUrl: '' }); // same origin: Vite forwards /api to leash

function Chat({ id, initial }: { id: string; initial: Awaited<ReturnType<typeof transport.loadChat>> }) {
  const { messages, sendMessage, stop, status, error } = useChat({ id, transport, messages: initial, resume: true });
  const [input, setInput] = useState('');
  const busy = status === 'submitted' || status === 'streaming';
  return (
    <main style={{ maxWidth: 720, margin: '2rem auto', fontFamily: 'system-ui, sans-serif' }}>
      <h1>useChat on leash</h1>
      {messages.map((m) => {
        const meta = m.metadata as LeashMessageMetadata | undefined;
        return (
          <p key={m.id}>
            <b>{m.role === 'user' ? 'You' : 'Assistant'}: </b>
            {m.parts.map((p, i) => (p.type === 'text' ? <span key={i}>{p.text}</span> : null))}
            {meta?.stopped ? <em> (stopped)</em> : null}
          </p>
        );
      })}
      {error ? <p role="alert">{error.message}</p> : null}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (input.trim() === '') return;
          void sendMessage({ text: input });
          setInput('');
        }}
      >
        <input aria-label="Message" value={input} onChange={(e) => setInput(e.target.value)} style={{ width: '70%' }} />
        <button type="submit" disabled={busy}>
          Send
        </button>
        <button type="button" onClick={() => void stop()} disabled={!busy}>
          Stop
        </button>
      </form>
    </main>
  );
}

async function start(): Promise<void> {
  const url = new URL(location.href);
  let id = url.searchParams.get('chat');
  if (id === null) {
    id = await transport.createChat();
    url.searchParams.set('chat', id);
    history.replaceState(null, '', url);
  }
  const initial = await transport.loadChat(id);
  createRoot(document.getElementById('root')!).render(
    <StrictMode>
      <Chat id={id} initial={initial} />
    </StrictMode>,
  );
}

void start();
