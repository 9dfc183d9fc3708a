// examples/log-analysis, run as its README says (`leash serve --tasks`): chunks with
// progress, findings streamed, a model call per chunk, a cancel that stops it, a
// name outside LOG_DIR refused, and kill -9 mid-file resumed from the last checkpoint
// with every line counted exactly once.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLog } from '../examples/log-analysis/make-log.ts';
import { api, readSse } from './helpers/server.ts';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';

const LINES = 60_000;
const TASKS = ['--tasks', 'examples/log-analysis/tasks.ts'];

describe('examples/log-analysis', () => {
  let dir: string;
  let env: Record<string, string>;
  let s: ServeProcess;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-logs-'));
    await makeLog(join(dir, 'logs', 'device.log'), LINES);
    await symlink('/etc/hostname', join(dir, 'logs', 'escape.log'));
    env = { LOG_DIR: join(dir, 'logs'), LEASH_DB: join(dir, 'leash.db') };
    s = await startServeProcess('logs', env, { args: TASKS, nodeArgs: ['--conditions=leash-source'] });
  });
  after(async () => {
    s?.proc.kill('SIGKILL');
    await s?.exited;
    await rm(dir, { recursive: true, force: true });
  });

  const create = (url: string, model: string, chunk = 64 * 1024) =>
    api(url, 'POST', '/api/tasks', {
      body: { type: 'log-analysis', input: { file: 'device.log', chunk_bytes: chunk, model } },
    });

  it('reads the file in chunks: progress with chunk and line counts, findings streamed, a result that counts every line', async () => {
    const t = await create(s.url, 'simulated?tps=0&tokens=3');
    assert.equal(t.status, 202, JSON.stringify(t.body));
    const frames = await readSse(await fetch(`${s.url}/api/tasks/${t.body.id}/events`));
    const progress = frames.filter((f) => f.event === 'task.progress').map((f) => f.data.message as string);
    assert.ok(progress.length > 10, `${progress.length} progress events`);
    assert.match(progress[0]!, /^chunk 1: [\d,]+ lines, \d+ findings$/);
    const text = frames
      .filter((f) => f.event === 'output.delta')
      .map((f) => f.data.text)
      .join('');
    assert.match(text, /anr at line \d+: com\.example\.app\d/);
    assert.match(text, /native-crash at line \d+: 11 \(SIGSEGV\)/);
    assert.match(text, /model: /);
    const end = frames.at(-1)!;
    assert.equal(end.event, 'task.completed', JSON.stringify(end.data));
    assert.equal(end.data.result.lines, LINES);
    assert.equal(end.data.result.findings, Math.floor(LINES / 2999));
  });

  it('a name outside LOG_DIR (.., absolute, a symlink out) fails with one answer', async () => {
    const errors = new Set<string>();
    for (const file of ['../leash.db', '/etc/passwd', 'escape.log', 'missing.log']) {
      const t = await api(s.url, 'POST', '/api/tasks', { body: { type: 'log-analysis', input: { file } } });
      const done = await api(s.url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`);
      assert.equal(done.body.status, 'failed', file);
      errors.add(done.body.error.message.replace(file.slice(0, 100), 'NAME'));
    }
    assert.deepEqual([...errors], ['No log named "NAME" in the log directory.']);
  });

  it('a cancel stops it mid-file, its partial findings kept', async () => {
    const t = await create(s.url, 'simulated?tps=50&tokens=20');
    await readSse(await fetch(`${s.url}/api/tasks/${t.body.id}/events`), {
      until: (f) => f.event === 'task.progress' && !/ 0 findings$/.test(f.data.message),
    });
    await api(s.url, 'POST', `/api/tasks/${t.body.id}/cancel`, { body: {} });
    const done = await api(s.url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`);
    assert.equal(done.body.status, 'cancelled');
    assert.match(done.body.output_text, /at line/);
    assert.ok(done.body.progress < 100);
  });

  it('kill -9 mid-file: after a restart it resumes from its last checkpoint and counts every line once', async () => {
    const t = await create(s.url, 'simulated?tps=400&tokens=8', 16 * 1024);
    await readSse(await fetch(`${s.url}/api/tasks/${t.body.id}/events`), {
      until: (f) => f.event === 'task.progress' && Number(/^chunk (\d+):/.exec(f.data.message)![1]) >= 5,
    });
    s.proc.kill('SIGKILL');
    await s.exited;
    s = await startServeProcess('logs-2', env, { args: TASKS, nodeArgs: ['--conditions=leash-source'] });
    const frames = await readSse(await fetch(`${s.url}/api/tasks/${t.body.id}/events`));
    const end = frames.at(-1)!;
    assert.equal(end.event, 'task.completed', JSON.stringify(end.data));
    assert.equal(end.data.result.lines, LINES, 'every line counted once across the crash');
    // The log shows the second run (started again after the recovery) and where it began.
    const starts = frames.flatMap((f, i) => (f.event === 'task.started' ? [i] : []));
    assert.equal(starts.length, 2, 'started, then started again after the restart');
    const next = frames.slice(starts[1]).find((f) => f.event === 'task.progress')!;
    const resumedAt = Number(/^chunk (\d+):/.exec(next.data.message)![1]);
    assert.ok(resumedAt > 1, `resumed at chunk ${resumedAt}, not from the start`);
  });
});
