// Issue #15, the model part, tried as an attacker would:
//  - a model name cannot read, probe or load files outside the operator's directory
//    (LEASH_MODELS_DIR): every miss gets one identical answer, with no file bytes;
//  - a model name outside the allowlist (LEASH_MODELS) is refused with 400
//    `model_not_allowed` on every route that takes one, before any I/O: a fake
//    upstream behind `openai:` counts zero requests.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import OpenAI, { BadRequestError } from 'openai';
import WebSocket from 'ws';
import { createModelAllowlist, parseModelPatterns } from '../src/models/allowlist.ts';
import { unloadGgufModels } from '../src/models/gguf/loaded-models.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import { SERVE_USAGE, UsageError, runServe } from '../src/cli/serve.ts';
import { LeashError } from '../src/core/errors.ts';
import { defineTask } from '../src/runtime/define-task.ts';
import { z } from 'zod';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { api, eventually, startTestServer, type TestServer } from './helpers/server.ts';
import { tinyGguf } from './helpers/tiny-gguf.ts';

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** Creates a generate task and waits for it to end; returns the task. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the task's JSON
async function generateUntilEnd(url: string, model: string): Promise<any> {
  const r = await api(url, 'POST', '/api/tasks', {
    body: { type: 'generate', input: { prompt: 'hi', model, max_tokens: 2 } },
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return eventually(async () => {
    const t = await api(url, 'GET', `/api/tasks/${r.body.id}`);
    return TERMINAL.has(t.body.status) ? t.body : null;
  }, 30_000);
}

/** One WebSocket frame exchange: sends `frame`, resolves with the answer to its request_id. */
async function wsAnswer(url: string, frame: Record<string, unknown>): Promise<Record<string, unknown>> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/api/ws`);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no answer over the WebSocket')), 10_000);
      ws.on('message', (data) => {
        const f = JSON.parse(String(data)) as Record<string, unknown>;
        if (f.request_id === frame.request_id) {
          clearTimeout(t);
          resolve(f);
        }
      });
      ws.send(JSON.stringify(frame));
    });
  } finally {
    ws.close();
  }
}

describe('model allowlist: patterns', () => {
  it('matches the name before ?parameters, * across any characters, everything else literally', () => {
    const a = createModelAllowlist(['simulated*', 'openai:gpt-4o-mini', 'gguf:qwen/*.gguf'], 'ollama:llama3');
    for (const ok of [
      'simulated',
      'simulated?tps=5',
      'simulated:echo?tps=0',
      'openai:gpt-4o-mini',
      'openai:gpt-4o-mini?x=1', // allowed by name; the openai provider then refuses the ?
      'gguf:qwen/a.gguf?ctx=512',
      'ollama:llama3', // the default model is always allowed
    ]) {
      assert.ok(a.allows(ok), ok);
    }
    for (const no of [
      'openai:gpt-4o',
      'openai:gpt-4o-mini2',
      'OPENAI:gpt-4o-mini',
      ' openai:gpt-4o-mini',
      'openai:gpt-4o-mini ',
      'openai:gpt.4o-mini', // `.` is literal
      'xsimulated',
      'gguf:qwenXa.gguf',
      'gguf:/etc/passwd',
      'ollama:llama3.2',
      '',
    ]) {
      assert.ok(!a.allows(no), JSON.stringify(no));
    }
    assert.throws(
      () => a.check('openai:gpt-4o'),
      (e: unknown) => LeashError.is(e, 'model_not_allowed'),
    );
    assert.deepEqual(parseModelPatterns(' a, b* ,,'), ['a', 'b*']);
    assert.equal(parseModelPatterns('  '), undefined);
  });

  it('unset LEASH_MODELS allows the default model and simulated* only; LEASH_MODELS replaces simulated*', () => {
    const env = { OPENAI_API_KEY: 'sk-x' } as NodeJS.ProcessEnv;
    const r = createModelRegistry({ defaultModel: 'openai:gpt-4o-mini', env });
    assert.equal(r.resolve('simulated?tps=0').id, 'simulated?tps=0');
    assert.equal(r.resolve('openai:gpt-4o-mini').id, 'openai:gpt-4o-mini');
    assert.throws(
      () => r.resolve('openai:gpt-4o'),
      (e: unknown) => LeashError.is(e, 'model_not_allowed'),
    );
    const only = createModelRegistry({ defaultModel: 'simulated', env: { ...env, LEASH_MODELS: 'openai:o1' } });
    assert.equal(only.resolve('openai:o1').id, 'openai:o1');
    assert.equal(only.resolve('simulated').id, 'simulated', 'the default model');
    assert.throws(
      () => only.resolve('simulated:echo'),
      (e: unknown) => LeashError.is(e, 'model_not_allowed'),
    );
  });

  it('leash serve --help names the variables; a --models-dir that is no directory stops the start', async () => {
    for (const v of ['--models', '--models-dir', 'LEASH_MODELS', 'LEASH_MODELS_DIR', 'LEASH_GGUF_MAX_CONTEXT']) {
      assert.ok(SERVE_USAGE.includes(v), v);
    }
    for (const v of ['LEASH_GGUF_THREADS', 'LEASH_GGUF_IDLE_MS', 'LEASH_GGUF_MAX_LOADED']) {
      assert.ok(SERVE_USAGE.includes(v), v);
    }
    await assert.rejects(
      runServe(['--port', '0', '--models-dir', '/nonexistent/leash-models'], {}),
      (e: unknown) => e instanceof UsageError && /not a directory/.test(e.message),
    );
    await assert.rejects(
      runServe(['--port', '0'], { LEASH_GGUF_MAX_LOADED: 'lots' }),
      (e: unknown) => e instanceof UsageError && /LEASH_GGUF_MAX_LOADED/.test(e.message),
    );
  });
});

describe('model allowlist: task types name their models', () => {
  it('a type with a models() hook is checked on every name it returns, at create', async () => {
    let ran = 0;
    const pair = defineTask({
      type: 'pair',
      input: z.object({ draft: z.string(), judge: z.string() }).strict(),
      models: (input) => [input.draft, input.judge],
      async run() {
        ran++;
        return null;
      },
    });
    const s = await startTestServer({ tasks: [pair] });
    try {
      const no = await api(s.url, 'POST', '/api/tasks', {
        body: { type: 'pair', input: { draft: 'simulated', judge: 'openai:gpt-4o' } },
      });
      assert.equal(no.status, 400, JSON.stringify(no.body));
      assert.equal(no.body.error.code, 'model_not_allowed');
      const ok = await api(s.url, 'POST', '/api/tasks', {
        body: { type: 'pair', input: { draft: 'simulated', judge: 'simulated:echo' } },
      });
      assert.equal(ok.status, 202, JSON.stringify(ok.body));
      await eventually(async () => ran === 1);
    } finally {
      await s.close();
    }
  });
});

describe('model allowlist: every route refuses a name outside it, before any I/O', () => {
  let stack: Stack;
  let upstream: FakeUpstream;
  let s: TestServer;
  let client: OpenAI;
  const ALLOWED = 'openai:gpt-allowed';
  const REFUSED = [
    'openai:gpt-4o',
    'openai:gpt-allowed2',
    'OPENAI:gpt-allowed',
    ' openai:gpt-allowed',
    'openai:gpt-allowed\n',
    'openai:*',
    'anthropic:claude-3-5-sonnet',
    'ollama:llama3',
    'gguf:/etc/passwd',
    'gguf:../../etc/passwd',
  ];

  before(async () => {
    stack = await startStack({
      upstream: { behaviour: 'stream', intervalMs: 1 },
      defaultModel: 'simulated',
      env: { OPENAI_API_KEY: 'sk-operator', ANTHROPIC_API_KEY: 'sk-ant' },
      allow: ['simulated*', ALLOWED],
    });
    ({ s, upstream } = stack);
    client = new OpenAI({ apiKey: 'none', baseURL: `${s.url}/v1`, maxRetries: 0 });
  });

  after(() => stack?.close());

  const refused = (r: { status: number; body: { error?: { code?: string } } }, what: string): void => {
    assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error?.code, 'model_not_allowed', `${what}: ${JSON.stringify(r.body)}`);
  };

  it('POST /api/tasks: generate, analyze and chat inputs; no task is created', async () => {
    const before = (await api(s.url, 'GET', '/api/tasks')).body.data.length;
    for (const model of REFUSED) {
      refused(
        await api(s.url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt: 'x', model } } }),
        `generate ${JSON.stringify(model)}`,
      );
      refused(
        await api(s.url, 'POST', '/api/tasks', { body: { type: 'analyze', input: { document: 'x', model } } }),
        `analyze ${JSON.stringify(model)}`,
      );
      refused(
        await api(s.url, 'POST', '/api/tasks', {
          body: { type: 'chat', input: { user_message_id: 'm1', assistant_message_id: 'm2', model } },
        }),
        `chat ${JSON.stringify(model)}`,
      );
    }
    assert.equal((await api(s.url, 'GET', '/api/tasks')).body.data.length, before);
    assert.equal(upstream.requests.length, 0);
  });

  it('thread runs: refused before the thread is touched (the active run is not interrupted)', async () => {
    const thread = (await api(s.url, 'POST', '/api/threads', { body: {} })).body;
    const first = await api(s.url, 'POST', `/api/threads/${thread.id}/runs`, {
      body: { content: 'a long one', model: 'simulated?tps=5&tokens=500' },
    });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    const messagesBefore = (await api(s.url, 'GET', `/api/threads/${thread.id}/messages`)).body.data.length;
    for (const model of REFUSED) {
      refused(
        await api(s.url, 'POST', `/api/threads/${thread.id}/runs`, { body: { content: 'hi', model } }),
        `thread run ${JSON.stringify(model)}`,
      );
    }
    assert.equal((await api(s.url, 'GET', `/api/tasks/${first.body.id}`)).body.status, 'running');
    assert.equal((await api(s.url, 'GET', `/api/threads/${thread.id}/messages`)).body.data.length, messagesBefore);
    await api(s.url, 'POST', `/api/tasks/${first.body.id}/cancel`);
    assert.equal(upstream.requests.length, 0);
  });

  it("WebSocket run frames, task and thread runs (the thread's active run is not interrupted)", async () => {
    const thread = (await api(s.url, 'POST', '/api/threads', { body: {} })).body;
    const active = await api(s.url, 'POST', `/api/threads/${thread.id}/runs`, {
      body: { content: 'a long one', model: 'simulated?tps=5&tokens=500' },
    });
    for (const [i, model] of REFUSED.entries()) {
      const task = await wsAnswer(s.url, {
        type: 'run',
        request_id: `t${i}`,
        task: { type: 'generate', input: { prompt: 'x', model } },
      });
      assert.equal(task.type, 'error', JSON.stringify(task));
      assert.equal((task.error as { code: string }).code, 'model_not_allowed', JSON.stringify(task));
      const run = await wsAnswer(s.url, {
        type: 'run',
        request_id: `r${i}`,
        thread_id: thread.id,
        content: 'x',
        model,
      });
      assert.equal((run.error as { code: string } | undefined)?.code, 'model_not_allowed', JSON.stringify(run));
    }
    assert.equal((await api(s.url, 'GET', `/api/tasks/${active.body.id}`)).body.status, 'running');
    await api(s.url, 'POST', `/api/tasks/${active.body.id}/cancel`);
    assert.equal(upstream.requests.length, 0);
  });

  it('/v1/chat/completions and /v1/responses through the official openai client', async () => {
    for (const model of REFUSED) {
      for (const call of [
        () => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] }),
        () => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], stream: true }),
        () => client.responses.create({ model, input: 'x' }),
      ]) {
        await assert.rejects(call(), (e: unknown) => {
          assert.ok(e instanceof BadRequestError, String(e));
          assert.equal(e.status, 400);
          assert.equal(e.code, 'model_not_allowed');
          assert.equal(e.param, 'model');
          return true;
        });
      }
    }
    assert.equal(upstream.requests.length, 0);
  });

  it('GET /v1/models lists only allowed models; GET /v1/models/:id refuses the others', async () => {
    const ids = (await client.models.list()).data.map((m) => m.id);
    assert.ok(ids.includes('simulated') && ids.includes(ALLOWED), ids.join(','));
    for (const id of ids) assert.ok(id.startsWith('simulated') || id === ALLOWED, id);
    await assert.rejects(client.models.retrieve('openai:gpt-4o'), (e: unknown) => {
      assert.ok(e instanceof BadRequestError);
      assert.equal(e.code, 'model_not_allowed');
      return true;
    });
    assert.equal(upstream.requests.length, 0);
  });

  it('?parameters cannot stretch an allowed remote name; the allowed name itself does reach the upstream', async () => {
    const stretched = await api(s.url, 'POST', '/v1/chat/completions', {
      body: { model: `${ALLOWED}?x=1`, messages: [{ role: 'user', content: 'x' }] },
    });
    assert.equal(stretched.status, 404, JSON.stringify(stretched.body));
    assert.equal(upstream.requests.length, 0, 'nothing went upstream for any refused name');

    // The counter can fail: the allowed model is one request, with the operator's key.
    const task = await generateUntilEnd(s.url, ALLOWED);
    assert.equal(task.status, 'completed', JSON.stringify(task));
    assert.equal(upstream.requests.length, 1);
    assert.equal((upstream.requests[0]!.body as { model: string }).model, 'gpt-allowed');
  });
});

describe('gguf: a model name cannot read, probe or load files outside LEASH_MODELS_DIR', () => {
  let root: string;
  let dir: string;
  let outside: string;
  let s: TestServer;
  let fifo = false;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'leash-sec-models-'));
    dir = join(root, 'models');
    outside = join(root, 'outside');
    mkdirSync(dir);
    mkdirSync(outside);
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'tiny.gguf'), tinyGguf({ seed: 1 }));
    // Real models outside the directory: reaching them would load them.
    writeFileSync(join(outside, 'tiny.gguf'), tinyGguf({ seed: 1 }));
    writeFileSync(join(outside, 'secret.txt'), 'root:x:0:0:SECRET-BYTES\n');
    writeFileSync(join(dir, 'notes.txt'), 'root:x:0:0:SECRET-BYTES\n');
    writeFileSync(join(dir, 'fake.gguf'), 'root:x:0:0:SECRET-BYTES\n'.repeat(100));
    symlinkSync('/etc/passwd', join(dir, 'passwd.gguf'));
    symlinkSync(join(outside, 'tiny.gguf'), join(dir, 'outside-model.gguf'));
    symlinkSync(outside, join(dir, 'outside-dir'));
    symlinkSync('/etc', join(dir, 'etc'));
    try {
      execFileSync('mkfifo', [join(dir, 'fifo.gguf')]);
      fifo = true;
    } catch {
      // no mkfifo here: that probe is skipped
    }
    s = await startTestServer({ allowModels: ['simulated*', 'gguf:*'], gguf: { modelsDir: dir } });
  });

  after(async () => {
    await s?.close();
    await unloadGgufModels();
    rmSync(root, { recursive: true, force: true });
  });

  const probes = (): string[] => [
    '/etc/passwd',
    '../../etc/passwd',
    '../../../../../../../../etc/passwd',
    '%2e%2e/%2e%2e/etc/passwd',
    '..%2f..%2fetc%2fpasswd',
    '%2Fetc%2Fpasswd',
    '..\\..\\etc\\passwd',
    `../${basename(outside)}/tiny.gguf`, // a real model just outside
    `../${basename(outside)}/secret.txt`,
    `${outside}/tiny.gguf`,
    `${dir}/tiny.gguf`, // absolute, even into the directory
    '//etc/passwd',
    'sub/../tiny.gguf',
    'passwd.gguf', // symlink to /etc/passwd
    'outside-model.gguf', // symlink to a real model outside
    'outside-dir/tiny.gguf',
    'etc/passwd',
    'missing.gguf',
    'sub/missing.gguf',
    'notes.txt', // not a GGUF file
    'fake.gguf', // .gguf name, other bytes
    'sub', // a directory
    '.',
    'tiny.gguf/', // other spellings of a model that is there: one name per model
    './tiny.gguf',
    'sub//../tiny.gguf',
    'sub/./../tiny.gguf',
    'tiny.gguf\u0000.txt',
    '~/.ssh/id_rsa',
    ...(fifo ? ['fifo.gguf'] : []),
  ];

  const leaks = (text: string): void => {
    for (const bad of ['root', 'SECRET', 'passwd', 'magic', 'ENOENT', 'ENOTDIR', 'EACCES', root, dir]) {
      assert.ok(!text.includes(bad), `leaks "${bad}": ${text}`);
    }
  };

  it('the control: a model in the directory loads and answers', async () => {
    const r = await api(s.url, 'POST', '/v1/chat/completions', {
      body: { model: 'gguf:tiny.gguf?threads=1&temp=0', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.usage.completion_tokens, 2);
  });

  it('/v1/chat/completions: one identical answer for every probe, no file bytes', async () => {
    const answers = new Map<string, string>();
    for (const name of probes()) {
      const r = await api(s.url, 'POST', '/v1/chat/completions', {
        body: { model: `gguf:${name}`, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
      });
      answers.set(name, `${r.status} ${JSON.stringify(r.body)}`);
    }
    const distinct = new Set(answers.values());
    assert.equal(distinct.size, 1, JSON.stringify(Object.fromEntries(answers), null, 1));
    const [one] = distinct;
    assert.match(one!, /^400 /);
    assert.match(one!, /"code":"model_unavailable"/);
    leaks(one!);
  });

  it('POST /api/tasks: every probe fails its task with one identical error, no file bytes', async () => {
    const errors = new Map<string, string>();
    for (const name of probes()) {
      const task = await generateUntilEnd(s.url, `gguf:${name}`);
      assert.equal(task.status, 'failed', `${name}: ${JSON.stringify(task)}`);
      errors.set(name, JSON.stringify(task.error));
    }
    const distinct = new Set(errors.values());
    assert.equal(distinct.size, 1, JSON.stringify(Object.fromEntries(errors), null, 1));
    leaks([...distinct][0]!);
  });

  it('the request cannot raise the context or threads past the operator caps', async () => {
    for (const q of ['ctx=8192', 'ctx=1048576', 'threads=100000']) {
      const r = await api(s.url, 'POST', '/v1/chat/completions', {
        body: { model: `gguf:tiny.gguf?${q}`, messages: [{ role: 'user', content: 'hi' }] },
      });
      assert.ok(r.status === 400 || r.status === 404, `${q}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.match(JSON.stringify(r.body), /on this server/);
    }
  });

  it('GET /v1/models lists the directory’s gguf files (allowed by gguf:*), nothing outside it', async () => {
    const ids = (await api(s.url, 'GET', '/v1/models')).body.data.map((m: { id: string }) => m.id) as string[];
    assert.ok(ids.includes('gguf:tiny.gguf'), ids.join(','));
    for (const id of ids.filter((i) => i.startsWith('gguf:'))) assert.ok(!id.includes('/'), id);
  });
});

describe('gguf: refused by the allowlist before the disk is looked at', () => {
  it('a refused name never reaches its provider', () => {
    let calls = 0;
    const spy = {
      resolve(): never {
        calls++;
        throw new Error('the provider was asked');
      },
    };
    const r = createModelRegistry({ defaultModel: 'simulated', providers: { gguf: spy, openai: spy } });
    for (const spec of ['gguf:/etc/passwd', 'gguf:tiny.gguf', 'openai:gpt-4o']) {
      assert.throws(
        () => r.resolve(spec),
        (e: unknown) => LeashError.is(e, 'model_not_allowed'),
      );
      assert.throws(
        () => r.check(spec),
        (e: unknown) => LeashError.is(e, 'model_not_allowed'),
      );
    }
    assert.equal(calls, 0);
  });

  it('with the default allowlist, gguf:/etc/passwd is model_not_allowed (no stat, no open)', async () => {
    const s = await startTestServer({ gguf: { modelsDir: tmpdir() } });
    try {
      const a = await api(s.url, 'POST', '/v1/chat/completions', {
        body: { model: 'gguf:/etc/passwd', messages: [{ role: 'user', content: 'x' }] },
      });
      const b = await api(s.url, 'POST', '/v1/chat/completions', {
        body: { model: 'gguf:/no/such/file', messages: [{ role: 'user', content: 'x' }] },
      });
      assert.equal(a.status, 400);
      assert.equal(a.body.error.code, 'model_not_allowed');
      assert.equal(b.body.error.code, 'model_not_allowed');
    } finally {
      await s.close();
    }
  });
});
