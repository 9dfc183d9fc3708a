// `leash tasks …` and `leash run` against a real in-process server, without a
// terminal (plain text and --json, as scripts see them). Most cases call the
// command functions with captured I/O; a few run the real binary, for exit codes,
// env, and a real SIGINT.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { LeashClient } from '../src/client/index.ts';
import type { Task } from '../src/client/index.ts';
import type { Io } from '../src/cli/common.ts';
import { runRun } from '../src/cli/run.ts';
import { runTasks } from '../src/cli/tasks.ts';
import { eventually, startTestServer } from './helpers/server.ts';
import type { TestServer } from './helpers/server.ts';

const BIN = join(import.meta.dirname, '..', 'bin', 'leash.js');
/** ~20 s of output: "still running" for as long as any test needs. */
const SLOW = 'simulated?tps=20&tokens=400';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

interface Harness {
  io: Io;
  signals: EventEmitter;
  stdout(): string;
  stderr(): string;
}

function harness(env: NodeJS.ProcessEnv, stdin = ''): Harness {
  let out = '';
  let err = '';
  const sink = (add: (s: string) => void): Writable =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        add(chunk.toString());
        cb();
      },
    });
  const signals = new EventEmitter();
  const io: Io = {
    stdout: sink((s) => (out += s)) as Io['stdout'],
    stderr: sink((s) => (err += s)) as Io['stderr'],
    stdin: Readable.from([stdin]),
    env,
    signals,
  };
  return { io, signals, stdout: () => out, stderr: () => err };
}

/** Runs a command function the way main() does: a thrown error with `exitCode` is one line on stderr. */
async function call(fn: (argv: string[], io: Io) => Promise<number>, argv: string[], h: Harness): Promise<Result> {
  let code: number;
  let extra = '';
  try {
    code = await fn(argv, h.io);
  } catch (err) {
    const c = (err as { exitCode?: unknown }).exitCode;
    if (typeof c !== 'number') throw err;
    code = c;
    extra = (err as Error).message + '\n';
  }
  return { code, stdout: h.stdout(), stderr: h.stderr() + extra };
}

function runBin(
  args: string[],
  env: NodeJS.ProcessEnv,
  onSpawn?: (p: ReturnType<typeof spawn>) => void,
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    onSpawn?.(p);
  });
}

describe('leash tasks / leash run (no terminal)', () => {
  let srv: TestServer;
  let client: LeashClient;
  let env: NodeJS.ProcessEnv;
  const h = (stdin?: string): Harness => harness(env, stdin);
  const slowTask = (type: 'generate' | 'analyze' = 'generate'): Promise<Task> =>
    client.tasks.create(
      type === 'generate'
        ? { type, input: { prompt: 'p', model: SLOW, max_tokens: 400 } }
        : { type, input: { document: 'x '.repeat(300), model: SLOW } },
    );
  const running = (id: string): Promise<Task> =>
    eventually(async () => {
      const t = await client.tasks.get(id);
      return t.status === 'running' && t.output_text !== '' ? t : null;
    });

  before(async () => {
    srv = await startTestServer({ runtime: { maxRunningPerOwner: 16 } });
    client = new LeashClient({ baseUrl: srv.url });
    env = { LEASH_URL: srv.url };
  });
  after(async () => {
    await client.tasks.cancelMany({}).catch(() => {});
    await srv?.close();
  });

  it('tasks: a table of id, type, status, progress, age; filters; --json', async () => {
    const done = await client.tasks.create({
      type: 'generate',
      input: { prompt: 'q', model: 'simulated?tps=0&tokens=3' },
    });
    await client.tasks.wait(done.id, { timeoutMs: 5000 });
    const slow = await slowTask();
    await running(slow.id);

    const all = await call(runTasks, [], h());
    assert.equal(all.code, 0, all.stderr);
    const lines = all.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^ID +TYPE +STATUS +PROGRESS +AGE$/);
    assert.ok(
      lines.some((l) => new RegExp(`^${done.id} +generate +completed +100% +\\d+s$`).test(l)),
      all.stdout,
    );
    assert.ok(
      lines.some((l) => new RegExp(`^${slow.id} +generate +running +\\d+% +\\d+s$`).test(l)),
      all.stdout,
    );
    // Newest first.
    assert.ok(all.stdout.indexOf(slow.id) < all.stdout.indexOf(done.id));

    const runningOnly = await call(runTasks, ['list', '--status', 'running,queued'], h());
    assert.ok(runningOnly.stdout.includes(slow.id) && !runningOnly.stdout.includes(done.id), runningOnly.stdout);
    assert.equal((await call(runTasks, ['--type', 'nonesuch'], h())).stdout, 'No tasks.\n');

    const json = await call(runTasks, ['--json', '--limit', '1'], h());
    const page = JSON.parse(json.stdout) as { data: Task[]; next_cursor: string | null };
    assert.deepEqual(
      page.data.map((t) => t.id),
      [slow.id],
    );
    assert.notEqual(page.next_cursor, null);

    for (const bad of [['--limit', '0'], ['--status', 'sleeping'], ['list', 'extra'], ['frobnicate'], ['--all']]) {
      const r = await call(runTasks, bad, h());
      assert.equal(r.code, 2, `${bad.join(' ')}: ${r.stderr}`);
      assert.notEqual(r.stderr, '');
    }
    await client.tasks.cancel(slow.id);
  });

  it('tasks cancel --all stops several running tasks, filtered by --type and --older-than', async () => {
    const gens = await Promise.all([slowTask(), slowTask(), slowTask()]);
    const other = await slowTask('analyze');
    await Promise.all([...gens, other].map((t) => running(t.id)));

    const young = await call(runTasks, ['cancel', '--all', '--type', 'generate', '--older-than', '10m'], h());
    assert.equal(young.code, 0, young.stderr);
    assert.equal(young.stdout, 'No active task matched; nothing to cancel.\n');
    for (const t of gens) assert.equal((await client.tasks.get(t.id)).status, 'running');

    const r = await call(runTasks, ['cancel', '--all', '--type', 'generate'], h());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Cancelled 3 tasks: /);
    // It waited: every one has stopped by the time the command returns.
    for (const t of gens) {
      assert.ok(r.stdout.includes(t.id));
      const now = await client.tasks.get(t.id);
      assert.equal(now.status, 'cancelled');
      assert.equal(now.cancel?.reason, 'batch');
    }
    assert.equal((await client.tasks.get(other.id)).status, 'running');

    // The real binary, no terminal, JSON for scripts: cancels what is left.
    const bin = await runBin(['tasks', 'cancel', '--all', '--json'], env);
    assert.equal(bin.code, 0, bin.stderr);
    assert.deepEqual(JSON.parse(bin.stdout), { cancelled: 1, ids: [other.id] });
    assert.equal((await client.tasks.get(other.id)).status, 'cancelled');
  });

  it('tasks cancel ID waits until it stopped; ended, unknown and bad ids exit 1', async () => {
    const slow = await slowTask();
    await running(slow.id);
    const r = await call(runTasks, ['cancel', slow.id], h());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${slow.id} cancelled (user)\n`);
    assert.equal((await client.tasks.get(slow.id)).status, 'cancelled');
    // Cancelling it again is fine (idempotent, as on the server).
    assert.equal((await call(runTasks, ['cancel', slow.id], h())).code, 0);

    const done = await client.tasks.create({
      type: 'generate',
      input: { prompt: 'q', model: 'simulated?tps=0&tokens=2' },
    });
    await client.tasks.wait(done.id, { timeoutMs: 5000 });
    const another = await slowTask();
    const mixed = await call(runTasks, ['cancel', done.id, 'task_doesnotexist', another.id, '--json'], h());
    assert.equal(mixed.code, 1);
    assert.match(mixed.stderr, new RegExp(`${done.id} had already completed; nothing to cancel\\.`));
    assert.match(mixed.stderr, /No task task_doesnotexist \(or it is not yours\)\./);
    const json = JSON.parse(mixed.stdout) as Task[];
    assert.deepEqual(
      json.map((t) => [t.id, t.status]),
      [[another.id, 'cancelled']],
    );

    const noIds = await call(runTasks, ['cancel'], h());
    assert.equal(noIds.code, 2);
    const both = await call(runTasks, ['cancel', another.id, '--type', 'generate'], h());
    assert.equal(both.code, 2);
  });

  it('tasks watch (plain): the output as it streams, then how it ended', async () => {
    const t = await client.tasks.create({
      type: 'generate',
      input: { prompt: 'w', model: 'simulated?tps=400&tokens=60', max_tokens: 60 },
    });
    const r = await call(runTasks, ['watch', t.id], h());
    assert.equal(r.code, 0, r.stderr);
    const final = await client.tasks.get(t.id);
    assert.equal(final.status, 'completed');
    assert.equal(r.stdout, final.output_text.endsWith('\n') ? final.output_text : final.output_text + '\n');
    assert.equal(r.stderr, `${t.id} completed\n`);

    // --json: the final task, nothing else.
    const j = await call(runTasks, ['watch', t.id, '--json'], h());
    assert.equal((JSON.parse(j.stdout) as Task).status, 'completed');

    const show = await call(runTasks, ['show', t.id], h());
    assert.match(show.stdout, new RegExp(`^id +${t.id}$`, 'm'));
    assert.match(show.stdout, /^status +completed$/m);
    assert.ok(show.stdout.includes(final.output_text.trim()));
    assert.equal((await call(runTasks, ['show', 'task_nope'], h())).code, 1);
  });

  it('tasks watch: Ctrl+C leaves the task running, unless --cancel-on-exit', async () => {
    const t = await slowTask();
    const w = h();
    const watching = call(runTasks, ['watch', t.id], w);
    await eventually(async () => w.stdout().length > 0);
    w.signals.emit('SIGINT');
    const r = await watching;
    assert.equal(r.code, 130);
    assert.match(r.stderr, new RegExp(`Stopped watching; ${t.id} keeps running`));
    assert.equal((await client.tasks.get(t.id)).status, 'running');

    const w2 = h();
    const again = call(runTasks, ['watch', t.id, '--cancel-on-exit'], w2);
    await eventually(async () => w2.stdout().length > 0);
    w2.signals.emit('SIGINT');
    const r2 = await again;
    assert.equal(r2.code, 1, r2.stderr);
    assert.match(r2.stderr, new RegExp(`Cancelling ${t.id}…`));
    assert.match(r2.stderr, new RegExp(`${t.id} cancelled \\(user\\)`));
    assert.equal((await client.tasks.get(t.id)).status, 'cancelled');
  });

  it('run: --json prints the final task; plain prints the output; --input @file and @-', async () => {
    const input = { prompt: 'r', model: 'simulated?tps=0&tokens=8' };
    const j = await call(runRun, ['generate', '--input', JSON.stringify(input), '--json'], h());
    assert.equal(j.code, 0, j.stderr);
    const task = JSON.parse(j.stdout) as Task;
    assert.equal(task.status, 'completed');
    assert.equal(task.type, 'generate');
    assert.ok(task.output_text.length > 0);

    const dir = await mkdtemp(join(tmpdir(), 'leash-cli-'));
    try {
      const file = join(dir, 'in.json');
      await writeFile(file, JSON.stringify({ ...input, prompt: 'file' }));
      const p = await call(runRun, ['generate', '--input', `@${file}`], h());
      assert.equal(p.code, 0, p.stderr);
      const [row] = (await client.tasks.list({ limit: 1 })).data;
      assert.deepEqual((row?.input as { prompt: string }).prompt, 'file');
      assert.equal(p.stdout, `${row?.output_text}\n`);
      assert.match(
        p.stderr,
        new RegExp(`^Started ${row?.id} \\(generate\\); Ctrl\\+C cancels it\\.\\n${row?.id} completed\\n$`),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const s = await call(
      runRun,
      ['generate', '--input', '@-', '--json'],
      h(JSON.stringify({ ...input, prompt: 'stdin' })),
    );
    assert.equal((JSON.parse(s.stdout) as Task & { input: { prompt: string } }).input.prompt, 'stdin');

    const d = await call(
      runRun,
      ['generate', '--input', JSON.stringify({ prompt: 'd', model: SLOW }), '--detach'],
      h(),
    );
    assert.match(d.stdout, /^task_\w+\n$/);
    assert.equal((await client.tasks.cancel(d.stdout.trim())).id, d.stdout.trim());
  });

  it('run: usage mistakes and a rejected input exit 2 with one sentence', async () => {
    const cases: string[][] = [
      [],
      ['generate', '--input', '{not json'],
      ['generate', '--input', '@/nonexistent/file.json'],
      ['generate', '--input', '{"promt": "typo"}'],
      ['nonesuch', '--input', '{}'],
      ['generate', '--deadline', 'soon'],
      ['generate', '--priority', 'high'],
      ['generate', '--bogus-flag'],
    ];
    for (const argv of cases) {
      const r = await call(runRun, argv, h());
      assert.equal(r.code, 2, `${argv.join(' ')} → ${r.code}: ${r.stderr}`);
      assert.notEqual(r.stderr.trim(), '');
    }
    const typo = await call(runRun, ['generate', '--input', '{"promt": "typo"}'], h());
    assert.match(typo.stderr, /input\.prompt/);
  });

  it('run: Ctrl+C cancels the task on the server, waits for it, exits 1', async () => {
    const w = h();
    const p = call(runRun, ['generate', '--input', JSON.stringify({ prompt: 'c', model: SLOW, max_tokens: 400 })], w);
    await eventually(async () => w.stdout().length > 0);
    w.signals.emit('SIGINT');
    const r = await p;
    assert.equal(r.code, 1, r.stderr);
    const id = /Started (task_\w+)/.exec(r.stderr)?.[1];
    assert.ok(id);
    const t = await client.tasks.get(id);
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel?.reason, 'user');
    // What was printed is what the task produced before it stopped.
    assert.equal(r.stdout.trimEnd(), t.output_text.trimEnd());
  });

  it('run: Ctrl+C while the task is still being created cancels it once the server has it', async () => {
    const w = h();
    const before = new Set((await client.tasks.list({ limit: 100 })).data.map((t) => t.id));
    // Ctrl+C as soon as run listens for it, which is while its create request is out.
    w.signals.once('newListener', (event) => {
      if (event === 'SIGINT') setImmediate(() => w.signals.emit('SIGINT'));
    });
    const p = call(runRun, ['generate', '--input', JSON.stringify({ prompt: 'early', model: SLOW })], w);
    const r = await p;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Cancelling as soon as the server has the task/);
    const id = /Started (task_\w+)/.exec(r.stderr)?.[1];
    assert.ok(id, r.stderr);
    assert.ok(!before.has(id));
    const t = await client.tasks.get(id);
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel?.reason, 'user');
  });

  it('the real binary: SIGINT to `leash run` cancels the server task', async () => {
    let child: ReturnType<typeof spawn> | undefined;
    let out = '';
    const done = runBin(
      ['run', 'generate', '--input', JSON.stringify({ prompt: 's', model: SLOW, max_tokens: 400 })],
      env,
      (p) => {
        child = p;
        p.stdout?.on('data', (d) => (out += d));
      },
    );
    await eventually(async () => out.length > 0, 15_000);
    child?.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 1, r.stderr);
    const id = /Started (task_\w+)/.exec(r.stderr)?.[1];
    assert.ok(id, r.stderr);
    const t = await client.tasks.get(id);
    assert.equal(t.status, 'cancelled');
    assert.match(r.stderr, new RegExp(`${id} cancelled \\(user\\)`));
  });

  it('unreachable server: exit 3 and one sentence; chat without a terminal: exit 2; --help has examples', async () => {
    const r = await runBin(['tasks'], { LEASH_URL: 'http://127.0.0.1:18097' });
    assert.equal(r.code, 3);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(
      r.stderr,
      /^leash tasks: Cannot reach the leash server at http:\/\/127\.0\.0\.1:18097 \(ECONNREFUSED\)/,
    );

    const chat = await runBin(['chat', '--server', srv.url], {});
    assert.equal(chat.code, 2);
    assert.match(chat.stderr, /leash chat needs a terminal/);

    const help = await runBin(['help', 'tasks'], {});
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Examples:\n {2}leash tasks\n/);
    const bad = await call(runTasks, ['--server', 'ftp://x'], h());
    assert.equal(bad.code, 2);
  });
});

describe('leash tasks with API keys', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ apiKeys: new Map([['key-alice', 'alice']]) });
  });
  after(async () => {
    await srv?.close();
  });

  it('no key or a wrong key: exit 4 and one sentence; the right key (flag or env) works', async () => {
    const missing = await call(runTasks, [], harness({ LEASH_URL: srv.url }));
    assert.equal(missing.code, 4);
    assert.equal(
      missing.stderr,
      `The leash server at ${srv.url} needs an API key: pass --api-key or set LEASH_API_KEY.\n`,
    );
    const wrong = await call(runTasks, ['--api-key', 'nope'], harness({ LEASH_URL: srv.url }));
    assert.equal(wrong.code, 4);
    assert.equal(
      wrong.stderr,
      `The leash server at ${srv.url} refused the API key: check --api-key / LEASH_API_KEY.\n`,
    );
    const viaEnv = await call(runTasks, [], harness({ LEASH_URL: srv.url, LEASH_API_KEY: 'key-alice' }));
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(viaEnv.stdout, 'No tasks.\n');
    // The flag wins over the env.
    const flag = await call(
      runTasks,
      ['--api-key', 'key-alice'],
      harness({ LEASH_URL: srv.url, LEASH_API_KEY: 'bad' }),
    );
    assert.equal(flag.code, 0, flag.stderr);
    const run = await runBin(['run', 'generate', '--input', '{"prompt":"x"}'], {
      LEASH_URL: srv.url,
      LEASH_API_KEY: 'bad',
    });
    assert.equal(run.code, 4);
  });
});
