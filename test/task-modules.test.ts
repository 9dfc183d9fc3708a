// Your own task types: `leash serve --tasks FILE` loads a module of definitions.
// Bad modules stop the start with exit 2 and one line naming the file; a good one
// runs like a built-in: validated input, progress on the stream, and a cancel that
// fires the handler's signal.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTaskModules } from '../src/cli/task-modules.ts';
import { UsageError } from '../src/cli/usage-error.ts';
import { builtinTasks } from '../src/tasks/index.ts';
import { api, eventually, readSse } from './helpers/server.ts';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';

const ROOT = join(import.meta.dirname, '..');
const FIX = 'test/fixtures/tasks';
const BUILTINS = new Map(builtinTasks.map((t) => [t.type, 'a built-in type']));

describe('loading task modules', () => {
  it('a good module: its definitions, after the built-ins', async () => {
    const defs = await loadTaskModules([`${FIX}/count.ts`], BUILTINS, ROOT);
    assert.deepEqual(
      defs.map((d) => d.type),
      ['count'],
    );
  });

  it('every kind of bad module is one UsageError naming the file and the problem', async () => {
    const cases: Array<[string[], RegExp]> = [
      [[`${FIX}/missing.ts`], /^--tasks test\/fixtures\/tasks\/missing\.ts: no such file$/],
      [
        [`${FIX}/throws.ts`],
        /^--tasks test\/fixtures\/tasks\/throws\.ts: failed to load: this module is broken on purpose$/,
      ],
      [[`${FIX}/empty.ts`], /^--tasks test\/fixtures\/tasks\/empty\.ts: exports no task definition/],
      [[`${FIX}/not-a-task.ts`], /^--tasks test\/fixtures\/tasks\/not-a-task\.ts: an export has no string "type"/],
      [[`${FIX}/bad-schema.ts`], /bad-schema\.ts: task "bad": "input" must be a zod schema/],
      [[`${FIX}/clash.ts`], /clash\.ts: task type "generate" is already defined by a built-in type$/],
      [
        [`${FIX}/count.ts`, `${FIX}/named.ts`],
        /named\.ts: task type "count" is already defined by test\/fixtures\/tasks\/count\.ts$/,
      ],
    ];
    for (const [paths, re] of cases) {
      await assert.rejects(loadTaskModules(paths, BUILTINS, ROOT), (e: Error) => {
        assert.ok(e instanceof UsageError, `${paths.join(' ')}: ${e.constructor.name}`);
        assert.match(e.message, re);
        assert.ok(!e.message.includes('\n'), 'one line');
        return true;
      });
    }
  });

  it('named exports are definitions too', async () => {
    const defs = await loadTaskModules([`${FIX}/named.ts`], BUILTINS, ROOT);
    assert.deepEqual(defs.map((d) => d.type).sort(), ['count', 'shout']);
  });
});

/** `leash serve` in a child process; resolves with its exit code and stderr. */
function serveExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const proc = spawn(
    process.execPath,
    ['--conditions=leash-source', 'src/cli/main.ts', 'serve', '--port', '0', ...args],
    {
      cwd: ROOT,
      env: { ...process.env, LEASH_DB: ':memory:', LEASH_API_KEYS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => proc.on('close', (code) => resolve({ code, stderr })));
}

describe('leash serve --tasks', () => {
  let s: ServeProcess;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-tasks-'));
    s = await startServeProcess(
      'tasks',
      { LEASH_DB: join(dir, 'leash.db') },
      {
        args: ['--tasks', `${FIX}/count.ts`, '--tasks', `${FIX}/isolated.ts`],
        nodeArgs: ['--conditions=leash-source'],
      },
    );
  });
  after(async () => {
    s?.proc.kill('SIGKILL');
    await s?.exited;
    await rm(dir, { recursive: true, force: true });
  });

  it('a bad module stops the start: exit 2, one line naming the file', async () => {
    for (const [args, re] of [
      [['--tasks', `${FIX}/throws.ts`], /throws\.ts: failed to load: this module is broken on purpose/],
      [['--tasks', `${FIX}/clash.ts`], /clash\.ts: task type "generate" is already defined by a built-in type/],
    ] as const) {
      const r = await serveExit([...args]);
      assert.equal(r.code, 2, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, re);
    }
    const env = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const proc = spawn(process.execPath, ['--conditions=leash-source', 'src/cli/main.ts', 'serve', '--port', '0'], {
        cwd: ROOT,
        env: { ...process.env, LEASH_DB: ':memory:', LEASH_TASKS: `${FIX}/count.ts, ${FIX}/empty.ts` },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      proc.on('close', (code) => resolve({ code, stderr }));
    });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /empty\.ts: exports no task definition/);
  });

  it('bad input for a module type: 400 invalid_request with per-field details', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: { type: 'count', input: { to: 0, every_ms: 'x' } } });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'invalid_request');
    const paths = (r.body.error.details as Array<{ path: string }>).map((d) => d.path).sort();
    assert.deepEqual(paths, ['input.every_ms', 'input.to']);
  });

  it('a module type runs like a built-in: progress on the stream, and a cancel fires its signal', async () => {
    const marker = join(dir, 'signal');
    const t = await api(s.url, 'POST', '/api/tasks', {
      body: { type: 'count', input: { to: 100_000, every_ms: 5, marker } },
    });
    assert.equal(t.status, 202, JSON.stringify(t.body));
    const res = await fetch(`${s.url}/api/tasks/${t.body.id}/events`);
    const frames = await readSse(res, {
      until: (f, all) => all.filter((x) => x.event === 'task.progress').length >= 3,
    });
    const progress = frames.filter((f) => f.event === 'task.progress');
    assert.match(progress[0]!.data.message, /^counted \d+ of 100000$/);
    const c = await api(s.url, 'POST', `/api/tasks/${t.body.id}/cancel`, { body: {} });
    assert.ok(c.status === 202 || c.status === 200);
    const done = await api(s.url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`);
    assert.equal(done.body.status, 'cancelled');
    await eventually(async () => existsSync(marker));
    assert.equal(readFileSync(marker, 'utf8'), 'user');
  });

  it('a module type runs isolated like a built-in: a handler deaf to its signal is killed after its grace', async () => {
    const t = await api(s.url, 'POST', '/api/tasks', { body: { type: 'spin', input: {} } });
    assert.equal(t.status, 202, JSON.stringify(t.body));
    const frames = await readSse(await fetch(`${s.url}/api/tasks/${t.body.id}/events`), {
      until: (f) => f.event === 'task.progress',
    });
    const pid = Number(/^pid (\d+)$/.exec(frames.at(-1)!.data.message)?.[1]);
    assert.ok(pid > 0 && pid !== s.proc.pid, 'it ran in a child process of its own');
    await api(s.url, 'POST', `/api/tasks/${t.body.id}/cancel`, { body: {} });
    const done = await api(s.url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`);
    assert.equal(done.body.status, 'cancelled');
    await eventually(async () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
  });
});
