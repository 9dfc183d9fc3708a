// leash as people get it: `npm pack`, the tarball installed into a new project outside
// this repository, and there (a) a task module of the user's own served by
// `npx leash serve --tasks ./tasks.ts`: created over HTTP, progress seen, cancelled,
// the handler's signal fired; (b) a Node script on `leash/client`; (c) a Vite page
// on `leash/client` that builds without pulling in any Node built-in.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { api, eventually, readSse } from './helpers/server.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
// Node 24 first on the PATH, as `npm test` has it, for npm, npx and the installed bin.
const ENV = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` };

describe('the packed package, installed outside the repository', () => {
  let dir: string;
  let app: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-pack-'));
    const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', dir], {
      cwd: ROOT,
      env: ENV,
      maxBuffer: 64 * 1024 * 1024,
    });
    const tarball = join(dir, stdout.trim().split('\n').at(-1)!);
    assert.ok(existsSync(tarball), `npm pack printed ${stdout}`);
    app = join(dir, 'app');
    await run('mkdir', [app]);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'my-app', private: true, type: 'module' }));
    // From the npm cache this repository's own install filled; no install scripts needed.
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball], {
      cwd: app,
      env: ENV,
      maxBuffer: 64 * 1024 * 1024,
    });
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('ships the built library, client, bin and UI, and no TypeScript sources or tests', () => {
    const pkg = join(app, 'node_modules', 'leash');
    for (const f of [
      'dist/index.js',
      'dist/index.d.ts',
      'dist/client/index.js',
      'bin/leash.js',
      'web/dist/index.html',
    ]) {
      assert.ok(existsSync(join(pkg, f)), f);
    }
    for (const f of ['src', 'test', 'bench', 'dist/index.ts']) assert.ok(!existsSync(join(pkg, f)), `${f} shipped`);
    assert.ok(!existsSync(join(app, 'node_modules', 'node')), 'the Node binary is not an install dependency');
    assert.ok(!existsSync(join(app, 'node_modules', 'node-llama-cpp')), 'node-llama-cpp is an optional peer');
  });

  it("(a) npx leash serve --tasks ./tasks.ts serves the user's own type: progress, cancel, signal", async () => {
    await writeFile(
      join(app, 'tasks.ts'),
      `import { writeFileSync } from 'node:fs';
import { defineTask, sleep, z } from 'leash';

export default defineTask({
  type: 'crunch',
  input: z.object({ steps: z.number().int().min(1), marker: z.string() }),
  async run(input, ctx) {
    ctx.signal.addEventListener('abort', () => writeFileSync(input.marker, 'aborted'));
    for (let i = 1; i <= input.steps; i++) {
      await sleep(10, ctx.signal);
      ctx.progress(Math.round((i * 100) / input.steps), \`step \${i}\`);
    }
    return { steps: input.steps };
  },
});
`,
    );
    const proc = spawn('npx', ['--no', 'leash', 'serve', '--port', '0', '--tasks', './tasks.ts'], {
      cwd: app,
      env: { ...ENV, LEASH_DB: join(dir, 'app.db'), LEASH_LOG_LEVEL: 'warn', LEASH_API_KEYS: '', PORT: '', HOST: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        proc.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          const m = /leash listening on (http:\/\/\S+)/.exec(out);
          if (m?.[1] !== undefined) resolve(m[1]);
        });
        proc.on('close', (code) => reject(new Error(`leash exited ${code}: ${stderr}`)));
      });
      const marker = join(dir, 'signal');
      const t = await api(url, 'POST', '/api/tasks', { body: { type: 'crunch', input: { steps: 100_000, marker } } });
      assert.equal(t.status, 202, JSON.stringify(t.body));
      const frames = await readSse(await fetch(`${url}/api/tasks/${t.body.id}/events`), {
        until: (f) => f.event === 'task.progress',
      });
      assert.match(frames.at(-1)!.data.message, /^step \d+$/);
      await api(url, 'POST', `/api/tasks/${t.body.id}/cancel`, { body: {} });
      assert.equal((await api(url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`)).body.status, 'cancelled');
      await eventually(async () => existsSync(marker));

      // (b) a Node script on the client package, against the same server.
      await writeFile(
        join(app, 'client.mjs'),
        `import { LeashClient } from 'leash/client';
const client = new LeashClient({ baseUrl: process.argv[2] });
const page = await client.tasks.list({ type: 'crunch' });
console.log(JSON.stringify(page.data.map((t) => t.status)));
`,
      );
      const { stdout } = await run(process.execPath, ['client.mjs', url], { cwd: app, env: ENV });
      assert.deepEqual(JSON.parse(stdout), ['cancelled']);
    } finally {
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        // already gone (the failure above says why)
      }
    }
  });

  it('(c) a Vite page on leash/client builds for the browser with no Node built-in', async () => {
    await writeFile(join(app, 'index.html'), '<!doctype html><script type="module" src="/main.ts"></script>');
    await writeFile(
      join(app, 'main.ts'),
      `import { LeashClient } from 'leash/client';
const client = new LeashClient({ baseUrl: '' });
void client.tasks.list().then((p) => console.log(p.data.length));
`,
    );
    const vite = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js');
    const { stdout, stderr } = await run(process.execPath, [vite, 'build', app, '--logLevel', 'info'], {
      cwd: app,
      env: ENV,
    });
    const log = stdout + stderr;
    assert.doesNotMatch(log, /externalized for browser compatibility|node:/, log);
    const assets = readdirSync(join(app, 'dist', 'assets')).filter((f) => f.endsWith('.js'));
    assert.equal(assets.length, 1, log);
    const js = readFileSync(join(app, 'dist', 'assets', assets[0]!), 'utf8');
    assert.doesNotMatch(js, /from"node:|require\("node:|import\("node:/);
    assert.match(js, /\/api\/tasks/, 'the client made it into the bundle');
  });
});
