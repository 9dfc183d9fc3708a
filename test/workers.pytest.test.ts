// The Python SDK's own pytest suite (clients/python/tests), run against a real
// `leash serve` so its server tests run too (none is skipped here).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { startServeProcess } from './helpers/serve-process.ts';
import { PYTHON } from './helpers/python-worker.ts';

const ROOT = join(import.meta.dirname, '..');

it('pytest clients/python/tests passes against a real server, skipping nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'leash-pytest-'));
  const server = await startServeProcess('pytest', {
    LEASH_DB: join(dir, 'leash.db'),
    LEASH_API_KEYS: 'pykey:py',
    LEASH_WORKER_LEASE_MS: '1500',
    LEASH_WORKER_PING_MS: '300',
    LEASH_WORKER_TYPES: 'pyt.a,pyt.block,pyt.spin,pyt.wait',
  });
  try {
    const proc = spawn(PYTHON, ['-m', 'pytest', 'clients/python/tests', '-q', '-rs', '-p', 'no:cacheprovider'], {
      cwd: ROOT,
      env: { ...process.env, LEASH_URL: server.url, LEASH_KEY: 'pykey', PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const code = await new Promise<number | null>((r) => proc.on('close', r));
    // 5 would be "no tests collected": that must fail here too.
    assert.equal(code, 0, out);
    assert.doesNotMatch(out, /skipped/, out);
    assert.match(out, /\d+ passed/);
  } finally {
    server.proc.kill('SIGKILL');
    await server.exited;
    await rm(dir, { recursive: true, force: true });
  }
});
