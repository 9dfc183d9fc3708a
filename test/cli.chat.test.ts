// `leash chat`'s Ink view and session, rendered with ink-testing-library against a
// real in-process server: keys go in through stdin, frames come out, and the
// server is asked what happened to the tasks and the thread.

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stripVTControlCharacters } from 'node:util';
import React from 'react';
import { render, cleanup } from 'ink-testing-library';
import { LeashClient } from '../src/client/index.ts';
import { ChatSession, cutShortMark } from '../src/cli/chat-session.ts';
import { explain } from '../src/cli/common.ts';
import { wrapRows } from '../src/cli/rows.ts';
import { ChatApp } from '../src/cli/ui/chat-app.ts';
import { unusedPort } from './helpers/fake-upstream.ts';
import { startTestServer } from './helpers/server.ts';
import type { TestServer } from './helpers/server.ts';

const SLOW = 'simulated?tps=50&tokens=400';
const ESC = '\x1b';
const CTRL_C = '\x03';
/** ink-testing-library's stdout is 100 columns wide; answer rows are indented by 2 and keep 1 free. */
const ROW_WIDTH = 97;

async function until<T>(fn: () => T | null | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 15));
  }
}

describe('leash chat (Ink)', () => {
  let srv: TestServer;
  let client: LeashClient;

  before(async () => {
    srv = await startTestServer({ model: 'simulated?tps=0&tokens=12' });
    client = new LeashClient({ baseUrl: srv.url });
  });
  after(async () => {
    await srv?.close();
  });
  afterEach(() => cleanup());

  function mount(opts: { model?: string | null; threadId?: string | null; base?: LeashClient } = {}) {
    const c = opts.base ?? client;
    const session = new ChatSession({
      client: c,
      model: opts.model === undefined ? SLOW : opts.model,
      threadId: opts.threadId ?? null,
      width: 100,
      describeError: (err) => (explain(err, { url: c.baseUrl, hasKey: false }) as Error).message,
      settleMs: 3000,
    });
    const r = render(React.createElement(ChatApp, { session }));
    const frame = (): string => stripVTControlCharacters(r.lastFrame() ?? '');
    const send = async (text: string): Promise<void> => {
      r.stdin.write(text);
      await new Promise((res) => setTimeout(res, 40)); // Ink flushes a lone Esc after 20 ms
    };
    return { session, r, frame, send };
  }

  it('Esc stops the answer: the task ends cancelled, the partial answer stays, marked', async () => {
    const { session, frame, send } = mount();
    await send('hello');
    await send('\r');
    await until(() => (session.getSnapshot().live?.deltas ?? 0) >= 8, 'some streamed tokens');
    const taskId = session.activeTaskId;
    assert.ok(taskId);
    await send(ESC);
    await until(() => frame().includes(cutShortMark('user')), 'the cut-short mark');

    const task = await client.tasks.wait(taskId, { timeoutMs: 5000 });
    assert.equal(task.status, 'cancelled');
    assert.equal(task.cancel?.reason, 'user');
    assert.ok(task.output_text.length > 0 && task.output_text.split(/\s+/).length < 400);
    // The partial answer on screen is the text the server kept, row for row, then the mark.
    const rows = wrapRows(task.output_text, ROW_WIDTH).map((r) => `  ${r}`.trimEnd());
    const lines = frame().split('\n');
    const first = lines.indexOf(rows[0]!);
    assert.ok(first > 0, frame());
    assert.deepEqual(lines.slice(first - 1, first + rows.length + 1), ['› hello', ...rows, '  [cut short: stopped]']);
    const messages = await client.threads.messages(task.thread_id!);
    assert.deepEqual(
      messages.map((m) => [m.role, m.status]),
      [
        ['user', 'complete'],
        ['assistant', 'cancelled'],
      ],
    );
    assert.equal(session.getSnapshot().live, null);
    // The status line (cut to the 100 columns of the test terminal).
    assert.match(
      frame(),
      new RegExp(`^simulated\\?tps=50&tokens=400 · thread ${task.thread_id} · tokens \\d+ in / \\d+ out · Ctrl`, 'm'),
    );
  });

  it('typing while an answer streams and pressing Enter interrupts it; the new answer follows', async () => {
    const { session, frame, send, r } = mount();
    await send('first question');
    await send('\r');
    await until(() => (session.getSnapshot().live?.deltas ?? 0) >= 5, 'the first answer streaming');
    const firstTask = session.activeTaskId!;
    await send('second');
    assert.match(frame(), /› second/); // typed while streaming, not sent yet
    await send('\r');
    await until(() => session.activeTaskId !== firstTask && (session.getSnapshot().live?.deltas ?? 0) >= 3, 'second');

    const first = await client.tasks.get(firstTask);
    assert.equal(first.status, 'cancelled');
    assert.equal(first.cancel?.reason, 'interrupted');
    const text = frame();
    const mark = text.indexOf(cutShortMark('interrupted'));
    const second = text.indexOf('› second');
    assert.ok(mark > text.indexOf('› first question') && second > mark, text);

    // Quitting cancels the answer still streaming: no task outlives the chat.
    const secondTask = session.activeTaskId!;
    await session.quit();
    assert.equal(session.getSnapshot().exitCode, 0);
    const t2 = await client.tasks.wait(secondTask, { timeoutMs: 5000 });
    assert.equal(t2.status, 'cancelled');
    // The last frames before Ink let go of the terminal say how to come back.
    const written = stripVTControlCharacters(r.frames.join('\n'));
    assert.match(
      written,
      new RegExp(`Thread ${first.thread_id}: continue with \`leash chat --thread ${first.thread_id}\``),
    );
    const messages = await client.threads.messages(first.thread_id!);
    assert.deepEqual(
      messages.map((m) => `${m.role}:${m.status}`),
      ['user:complete', 'assistant:cancelled', 'user:complete', 'assistant:cancelled'],
    );
  });

  it('shows the history of a thread first, cut-short turns marked, with the token counts', async () => {
    const thread = await client.threads.create();
    const done = await client.threads.run(thread.id, { content: 'one', model: 'simulated?tps=0&tokens=5' });
    await client.tasks.wait(done.id, { timeoutMs: 5000 });
    const cut = await client.threads.run(thread.id, { content: 'two', model: SLOW });
    for await (const ev of client.tasks.events(cut.id)) if (ev.type === 'output.delta') break;
    await client.tasks.cancel(cut.id);
    await client.tasks.wait(cut.id, { timeoutMs: 5000 });
    const messages = await client.threads.messages(thread.id);

    const { session, frame } = mount({ threadId: thread.id });
    session.loadHistory(messages);
    await until(() => frame().includes('› two'), 'history');
    const text = frame();
    const [, a1, , a2] = messages;
    assert.ok(a1 && a2 && a2.status === 'cancelled' && a2.content !== '');
    const lines = text.split('\n');
    // Complete answer: no mark after it; the cut-short one: marked.
    const i1 = lines.indexOf(`  ${a1.content.trim()}`);
    assert.ok(i1 > 0, text);
    assert.equal(lines[i1 - 1], '› one');
    assert.equal(lines[i1 + 1], '');
    assert.equal(lines[i1 + 2], '› two');
    assert.equal(lines[i1 + 3], `  ${a2.content.trim()}`);
    assert.equal(lines[i1 + 4], '  [cut short]');
    assert.equal(text.split('[cut short').length - 1, 1);
    const input = messages.reduce((n, m) => n + (m.usage?.input_tokens ?? 0), 0);
    const output = messages.reduce((n, m) => n + (m.usage?.output_tokens ?? 0), 0);
    assert.ok(output > 0);
    assert.match(text, new RegExp(`thread ${thread.id} · tokens ${input} in / ${output} out`));
  });

  it('joins an answer still being written when it starts, and Esc stops that one too', async () => {
    const thread = await client.threads.create();
    const run = await client.threads.run(thread.id, { content: 'already asked', model: SLOW });
    for await (const ev of client.tasks.events(run.id)) if (ev.type === 'output.delta') break;
    const { session, frame, send } = mount({ threadId: thread.id });
    session.loadHistory(await client.threads.messages(thread.id));
    assert.equal(session.activeTaskId, run.id);
    await until(() => (session.getSnapshot().live?.deltas ?? 0) >= 5, 'the replayed and live answer');
    assert.match(frame(), /› already asked/);
    await send(ESC);
    await until(() => frame().includes(cutShortMark('user')), 'the mark');
    const task = await client.tasks.wait(run.id, { timeoutMs: 5000 });
    assert.equal(task.status, 'cancelled');
    // Replayed from the first event: the whole partial answer is on screen, once.
    const rows = wrapRows(task.output_text, ROW_WIDTH).map((r) => `  ${r}`.trimEnd());
    const lines = frame().split('\n');
    const first = lines.indexOf(rows[0]!);
    assert.deepEqual(lines.slice(first, first + rows.length + 1), [...rows, '  [cut short: stopped]']);
    assert.equal(frame().split(rows[0]!).length, 2);
  });

  it('a completed answer is not marked, and the status line learns the model', async () => {
    const { session, frame, send } = mount({ model: null });
    assert.match(frame(), /server default · thread new/);
    await send('hi');
    await send('\r');
    // The answer is in: an answer entry, nothing live or pending (a thread id alone comes first).
    await until(() => {
      const s = session.getSnapshot();
      return (
        s.threadId !== null && s.live === null && s.pendingUser === null && s.entries.some((e) => e.kind === 'answer')
      );
    }, 'the answer');
    const [task] = (await client.tasks.list({ thread_id: session.getSnapshot().threadId! })).data;
    assert.equal(task?.status, 'completed');
    const result = task.result as { text: string; model: string };
    await until(() => frame().includes(`${result.model} · thread ${task.thread_id}`), 'the model in the status line');
    assert.ok(frame().includes(`  ${result.text.trim()}`), frame());
    assert.doesNotMatch(frame(), /\[cut short|\[failed/);
  });

  it('Ctrl+C stops the answer, says how to quit, and a second Ctrl+C quits', async () => {
    const { session, frame, send, r } = mount();
    await send('hello');
    await send('\r');
    await until(() => (session.getSnapshot().live?.deltas ?? 0) >= 2, 'streaming');
    const taskId = session.activeTaskId!;
    await send(CTRL_C);
    await until(() => frame().includes('Press Ctrl+C again to quit.'), 'the notice');
    await until(() => frame().includes(cutShortMark('user')), 'the stopped answer');
    assert.equal((await client.tasks.wait(taskId, { timeoutMs: 5000 })).status, 'cancelled');
    assert.equal(session.getSnapshot().exitCode, null);
    await send(CTRL_C);
    await until(() => session.getSnapshot().exitCode === 0, 'exit');
    r.unmount();
  });

  it('an unreachable server is one sentence on screen, and the line is given back', async () => {
    // A port nothing listens on (a fixed one may be taken by another server on the machine).
    const port = await unusedPort();
    const dead = new LeashClient({ baseUrl: `http://127.0.0.1:${port}`, reconnect: { maxRetries: 0 } });
    const { session, frame, send } = mount({ base: dead });
    await send('are you there');
    await send('\r');
    await until(() => frame().includes('Cannot reach the leash server'), 'the error');
    assert.ok(frame().includes(`! Cannot reach the leash server at http://127.0.0.1:${port} (ECONNREFUSED)`), frame());
    assert.equal(session.getSnapshot().input, 'are you there');
    assert.equal(session.getSnapshot().pendingUser, null);
  });
});
