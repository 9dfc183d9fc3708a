// The real `leash chat` and `leash run` in a pseudo-terminal (tmux) against a real
// server: keys are typed, the screen is read, and the server is asked what
// happened to the tasks. Needs tmux (CI installs it; skipped with a reason if missing).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startTestServer, eventually } from './helpers/server.ts';
import type { TestServer } from './helpers/server.ts';
import { TmuxSession, tmuxAvailable } from './helpers/tmux.ts';
import { LeashClient } from '../src/client/index.ts';
import { wrapRows } from '../src/cli/rows.ts';

const MAIN = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
const COLS = 120;
const skip = tmuxAvailable() ? false : 'tmux is not installed (apt-get install -y tmux)';

describe('leash CLI in a terminal', { skip }, () => {
  let srv: TestServer;
  let client: LeashClient;
  before(async () => {
    srv = await startTestServer();
    client = new LeashClient({ baseUrl: srv.url });
  });
  after(async () => {
    await srv?.close();
  });

  it('chat: Esc mid-stream cancels the server task and leaves the partial answer on screen, marked', async () => {
    const term = await TmuxSession.start(
      [process.execPath, MAIN, 'chat', '--server', srv.url, '--model', 'simulated?tps=20&tokens=400'],
      { cols: COLS, rows: 40 },
    );
    try {
      await term.waitFor(/Ctrl\+C twice quits/);
      await term.type('tell me a long story');
      await term.keys('Enter');
      // At least ten tokens on screen (the status line counts them), then Esc.
      await term.waitFor((s) => /Esc stops the answer/.test(s) && /\(\+\d{2,}\)/.test(s));
      await term.keys('Escape');
      const screen = await term.waitFor(/\[cut short: stopped\]/);

      const tasks = (await client.tasks.list({ type: 'chat' })).data;
      assert.equal(tasks.length, 1);
      const task = await client.tasks.wait(tasks[0]!.id, { timeoutMs: 5000 });
      assert.equal(task.status, 'cancelled');
      assert.equal(task.cancel?.reason, 'user');
      // Stopped early: a 400-token answer at 20 tokens/s would take 20 s.
      const words = task.output_text.trim().split(/\s+/).length;
      assert.ok(words >= 10 && words < 200, `partial answer of ${words} words`);

      // The screen holds exactly the partial answer the server kept, then the mark.
      const rows = wrapRows(task.output_text, COLS - 3).map((r) => r.trimEnd());
      const lines = screen.split('\n');
      const first = lines.findIndex((l) => l === `  ${rows[0]}`);
      assert.ok(first > 0, `first answer row not on screen:\n${screen}`);
      assert.deepEqual(
        lines.slice(first, first + rows.length + 1),
        [...rows.map((r) => `  ${r}`), '  [cut short: stopped]'],
        screen,
      );
      assert.match(lines[first - 1] ?? '', /^› tell me a long story$/);

      // The thread stores the same cut-short turn.
      const messages = await client.threads.messages(task.thread_id!);
      const answer = messages.find((m) => m.task_id === task.id && m.role === 'assistant');
      assert.equal(answer?.status, 'cancelled');
      assert.equal(answer?.content, task.output_text);

      // The chat goes on: the status line names the thread; Ctrl+C twice quits with 0.
      assert.match(screen, new RegExp(`thread ${task.thread_id}`));
      await term.keys('C-c');
      await term.waitFor(/Press Ctrl\+C again to quit/);
      await term.keys('C-c');
      assert.equal(await term.exitCode(), 0);
    } finally {
      await term.kill();
    }
  });

  it('chat: an unknown thread or an unreachable server is one sentence and an exit code', async () => {
    const term = await TmuxSession.start([
      process.execPath,
      MAIN,
      'chat',
      '--server',
      srv.url,
      '--thread',
      'thread_nope',
    ]);
    try {
      assert.equal(await term.exitCode(), 1);
      assert.match(await term.screen(), /^leash chat: Thread thread_nope not found\.$/m);
    } finally {
      await term.kill();
    }
    const down = await TmuxSession.start([process.execPath, MAIN, 'chat'], {
      env: { LEASH_URL: 'http://127.0.0.1:18098' },
    });
    try {
      assert.equal(await down.exitCode(), 3);
      assert.match(await down.screen(), /^leash chat: Cannot reach the leash server at http:\/\/127\.0\.0\.1:18098/m);
    } finally {
      await down.kill();
    }
  });

  it('run: a progress bar, and Ctrl+C cancels the task on the server (exit 1)', async () => {
    const input = JSON.stringify({ prompt: 'x', model: 'simulated?tps=40&tokens=2000', max_tokens: 2000 });
    const term = await TmuxSession.start(
      [process.execPath, MAIN, 'run', 'generate', '--server', srv.url, '--input', input],
      { cols: 100, rows: 30 },
    );
    try {
      const screen = await term.waitFor(/generate {2}running {2}\[█+░+\] {2}\d+%/);
      const id = /(task_\w+) {2}generate/.exec(screen)?.[1];
      assert.ok(id, screen);
      assert.match(screen, /Ctrl\+C cancels the task\./);
      await term.keys('C-c');
      const end = await term.waitFor(/\[exit \d+\]/);
      assert.match(end, new RegExp(`${id} {2}generate {2}cancelled \\(user\\)`));
      assert.equal(await term.exitCode(), 1);
      const task = await eventually(async () => {
        const t = await client.tasks.get(id);
        return t.status === 'cancelled' ? t : null;
      });
      assert.equal(task.cancel?.reason, 'user');
      assert.ok(task.progress !== null && task.progress < 100);
    } finally {
      await term.kill();
    }
  });
});
