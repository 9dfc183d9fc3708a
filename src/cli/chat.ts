// `leash chat [--thread ID] [--model M]`: the interactive chat (Ink). Checks the
// server and the key before drawing anything, so a wrong URL or key is one
// sentence and an exit code, not a broken screen.

import { parseArgs } from 'node:util';
import type { Message } from '../client/index.ts';
import { CONNECTION_OPTIONS, EXIT, connect, explain, parseFailure, processIo, usage, withErrors } from './common.ts';
import type { Io } from './common.ts';
import { CHAT_USAGE } from './help.ts';

export async function runChat(argv: string[], io: Io = processIo()): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { ...CONNECTION_OPTIONS, thread: { type: 'string' }, model: { type: 'string' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw parseFailure(err, CHAT_USAGE);
  }
  if (values.help === true) {
    io.stdout.write(CHAT_USAGE + '\n');
    return EXIT.ok;
  }
  if (io.stdin.isTTY !== true || io.stdout.isTTY !== true) {
    throw usage('leash chat needs a terminal (stdin and stdout); from scripts, use the HTTP API or the client SDK.');
  }
  if (values.model !== undefined && values.model.trim() === '') throw usage('--model must not be empty.');
  const conn = connect(values, io.env);
  const threadId = values.thread ?? null;
  // Also the reachability and key check: the first answer must not be the one to fail.
  const history: Message[] = await withErrors(conn, async () =>
    threadId === null ? (await conn.client.threads.list({ limit: 1 }), []) : conn.client.threads.messages(threadId),
  );

  const [{ default: React }, { render }, { ChatApp }, { ChatSession }] = await Promise.all([
    import('react'),
    import('ink'),
    import('./ui/chat-app.ts'),
    import('./chat-session.ts'),
  ]);
  const session = new ChatSession({
    client: conn.client,
    threadId,
    model: values.model ?? null,
    width: io.stdout.columns ?? 80,
    describeError: (err) => (explain(err, conn) as Error).message,
  });
  session.loadHistory(history);
  const app = render(React.createElement(ChatApp, { session }), {
    stdout: io.stdout,
    stdin: io.stdin,
    stderr: io.stderr,
    // Ctrl+C is a key here (stop the answer; twice: quit), not a signal.
    exitOnCtrlC: false,
    // Explicit: Ink would fall back to printing only the last frame when CI is set.
    interactive: true,
  });
  await app.waitUntilExit();
  return session.getSnapshot().exitCode ?? EXIT.ok;
}
