// `leash serve` as a real process: the URL line on stdout, a graceful SIGTERM,
// and exit code 2 with one clear sentence for usage mistakes.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '..', 'bin', 'leash.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('leash CLI', () => {
  it('serve prints its URL, serves, and exits 0 on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-cli-'));
    try {
      const p = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--db', join(dir, 'l.db')], {
        env: { ...process.env, LEASH_LOG_LEVEL: 'warn', LEASH_API_KEYS: '', HOST: '' },
        stdio: 'pipe',
      });
      let stdout = '';
      let stderr = '';
      p.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((r) => p.on('close', r));
      const url = await new Promise<string>((resolve, reject) => {
        p.stdout.on('data', (d) => {
          stdout += d;
          const m = /^leash listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout);
          if (m?.[1] !== undefined) resolve(m[1]);
        });
        p.on('close', () => reject(new Error(`exited early: ${stderr}`)));
      });
      const h = await fetch(`${url}/healthz`);
      assert.equal(h.status, 200);
      const t = await fetch(`${url}/api/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'generate', input: { prompt: 'x', model: 'simulated?tps=0&tokens=2' } }),
      });
      assert.equal(t.status, 202);
      p.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('usage mistakes exit 2 with one clear sentence', async () => {
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    assert.match(unknown.stderr, /Usage: leash <command>/);

    const none = await run([]);
    assert.equal(none.code, 2);

    const badPort = await run(['serve', '--port', '99999']);
    assert.equal(badPort.code, 2);
    assert.match(badPort.stderr, /Invalid port "99999"/);

    const badFlag = await run(['serve', '--nope']);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /--nope/);

    const open = await run(['serve', '--host', '0.0.0.0', '--port', '0'], { LEASH_API_KEYS: '' });
    assert.equal(open.code, 2);
    assert.match(open.stderr, /Refusing to listen on 0\.0\.0\.0 without API keys/);
    assert.doesNotMatch(open.stderr, /\n\s+at /, 'no stack trace');

    const keys = await run(['serve', '--port', '0'], { LEASH_API_KEYS: 'justakey' });
    assert.equal(keys.code, 2);
    assert.match(keys.stderr, /LEASH_API_KEYS entry 1/);
  });

  it('help exits 0 and lists serve', async () => {
    for (const args of [['--help'], ['help'], ['help', 'serve'], ['serve', '--help']]) {
      const r = await run(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /serve/);
    }
  });
});

describe('leash serve: runtime settings from the environment', () => {
  it('reads the limits, the lease and the streaming batch window; refuses what is not a number in range', async () => {
    const { runtimeLimitsFromEnv, UsageError } = await import('../src/cli/serve.ts');
    assert.deepEqual(
      runtimeLimitsFromEnv({ LEASH_CONCURRENCY: '8', LEASH_LEASE_MS: '2000', LEASH_EVENT_BATCH_MS: '0' }),
      { concurrency: 8, leaseMs: 2000, eventBatchMs: 0 },
    );
    assert.deepEqual(runtimeLimitsFromEnv({ LEASH_EVENT_BATCH_MS: '250' }), { eventBatchMs: 250 });
    for (const [name, value, says] of [
      ['LEASH_EVENT_BATCH_MS', '60001', 'at most 60000'],
      ['LEASH_EVENT_BATCH_MS', 'soon', 'expected an integer ≥ 0'],
      ['LEASH_CONCURRENCY', '0', 'expected an integer ≥ 1'],
    ] as const) {
      assert.throws(
        () => runtimeLimitsFromEnv({ [name]: value }),
        (e: unknown) => e instanceof UsageError && e.message.includes(name) && e.message.includes(says),
        `${name}=${value}`,
      );
    }
  });
});
