// Issue 15, "secrets stay put": an isolated handler (worker thread or child
// process) sees an allowlisted environment — never the server's API keys, database
// URL or provider keys — plus exactly the names its task type asks for.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { defineTask } from '../src/runtime/define-task.ts';
import { isolatedEnv } from '../src/runtime/isolation/env.ts';
import { envTasks, modelsProcess } from './fixtures/env-tasks.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import { startRuntime, type TestRuntime } from './helpers/runtime.ts';

const OWNER = 'alice';

/** Set in this (the server's) process before any slot starts. */
const SECRETS: Record<string, string> = {
  LEASH_API_KEYS: 'sekret-key-1:alice,sekret-key-2:bob',
  LEASH_API_KEYS_FILE: '/run/secrets/leash-keys',
  LEASH_DB: 'postgres://leash:sekret-db-pass@db.internal:5432/leash',
  DATABASE_URL: 'postgres://leash:sekret-db-pass2@db.internal/leash',
  PGPASSWORD: 'sekret-pg-pass',
  PGUSER: 'leash-db-user',
  OPENAI_API_KEY: 'sk-sekret-openai',
  ANTHROPIC_API_KEY: 'sk-ant-sekret',
  AWS_SECRET_ACCESS_KEY: 'sekret-aws',
  NODE_AUTH_TOKEN: 'sekret-npm-token',
  // Not a known secret at all: an allowlist keeps it out anyway, a denylist would not.
  ACME_INTERNAL_SETTING: 'sekret-unknown',
};

describe('isolated handlers get a filtered environment', () => {
  let t: TestRuntime;
  const saved: Record<string, string | undefined> = {};

  before(async () => {
    for (const [k, v] of Object.entries(SECRETS)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    t = await startRuntime(envTasks, { maxRunningPerOwner: 8 });
  });
  after(async () => {
    await t.close();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  async function envOf(type: string): Promise<Record<string, string>> {
    const { task } = await t.runtime.create(OWNER, { type, input: {} });
    const done = await t.runtime.wait(task.id, OWNER, 20_000);
    assert.equal(done?.status, 'completed', JSON.stringify(done?.error));
    return done!.result as Record<string, string>;
  }

  for (const kind of ['worker', 'process'] as const) {
    it(`${kind}: no API keys, database URL, provider keys or unknown variables; PATH still there`, async () => {
      const env = await envOf(`env.${kind}`);
      for (const name of Object.keys(SECRETS)) assert.ok(!(name in env), `${name} leaked into the ${kind}`);
      const dump = JSON.stringify(env);
      assert.ok(!dump.includes('sekret'), `a secret value leaked: ${dump}`);
      assert.equal(env.PATH, process.env.PATH, 'what a program needs to run is passed');
      for (const name of Object.keys(env)) {
        assert.match(
          name,
          /^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|TZ|TMPDIR|TMP|TEMP|TERM|LEASH_LOG_LEVEL|LEASH_SIM_TPS|LC_\w+|NODE_\w+)$/,
        );
      }
    });

    it(`${kind}: a type that lists env: ['OPENAI_API_KEY'] gets that one and nothing else secret`, async () => {
      const env = await envOf(`env.openai.${kind}`);
      assert.equal(env.OPENAI_API_KEY, SECRETS.OPENAI_API_KEY);
      for (const name of Object.keys(SECRETS).filter((n) => n !== 'OPENAI_API_KEY')) {
        assert.ok(!(name in env), `${name} leaked into the ${kind}`);
      }
    });
  }

  it('a warm slot that ran a type with a key never serves a type without it', async () => {
    // Alternate the two types on each kind: pools are per allowlist, so no slot carries the key across.
    for (let i = 0; i < 3; i++) {
      for (const kind of ['worker', 'process'] as const) {
        assert.equal((await envOf(`env.openai.${kind}`)).OPENAI_API_KEY, SECRETS.OPENAI_API_KEY);
        assert.ok(!('OPENAI_API_KEY' in (await envOf(`env.${kind}`))));
      }
    }
  });

  it('isolatedEnv: allowlist, secret-looking names refused even under NODE_, asked names passed as they are', () => {
    const env = isolatedEnv(
      { PATH: '/bin', NODE_OPTIONS: '--x', NODE_AUTH_TOKEN: 't', LC_ALL: 'C', FOO: 'f', MY_KEY: 'k', PGHOST: 'h' },
      ['MY_KEY', 'MISSING'],
    );
    assert.deepEqual(env, { PATH: '/bin', NODE_OPTIONS: '--x', LC_ALL: 'C', MY_KEY: 'k' });
  });

  it('defineTask refuses an env entry that is not a variable name', () => {
    for (const bad of ['', 'A=B', '1X', 'A B', 'X'.repeat(200)]) {
      assert.throws(
        () => defineTask({ type: 'bad', input: envTasks[0]!.input, env: [bad], run: async () => 1 }),
        /not a variable name/,
      );
    }
  });
});

describe('isolated handlers keep the model allowlist', () => {
  it('a process handler may name what the server allows, and nothing more (its environment has no LEASH_MODELS)', async () => {
    const models = createModelRegistry({
      defaultModel: 'simulated',
      allow: ['simulated*', 'openai:gpt-allowed'],
      env: {},
    });
    const t = await startRuntime([modelsProcess], { models });
    try {
      const names = ['simulated?tps=5', 'openai:gpt-allowed', 'openai:gpt-other', 'gguf:x.gguf'];
      const { task } = await t.runtime.create(OWNER, { type: 'models.process', input: { names } });
      const done = await t.runtime.wait(task.id, OWNER, 20_000);
      assert.equal(done?.status, 'completed', JSON.stringify(done?.error));
      const r = done!.result as { patterns: string[]; allowed: boolean[] };
      assert.deepEqual(r.allowed, [true, true, false, false]);
      assert.ok(r.patterns.includes('openai:gpt-allowed'));
    } finally {
      await t.close();
    }
  });
});
