// A first run shows a real model when there is one: with LEASH_MODEL unset and an
// Ollama answering at OLLAMA_HOST, `leash serve` uses its first model and says so;
// with none, it says plainly that answers are simulated and how to get real ones.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api } from './helpers/server.ts';
import { detectDefaultModel } from '../src/cli/default-model.ts';

/** A fake Ollama: `/api/tags` and its OpenAI-compatible `/v1/chat/completions` (streamed). */
function fakeOllama(): Promise<{ server: Server; host: string; models: string[] }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    if (req.url === '/api/tags') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ models: [{ name: 'llama3.2:1b', model: 'llama3.2:1b' }, { name: 'qwen3:4b' }] }));
      return;
    }
    let body = '';
    req.on('data', (d: Buffer) => (body += d));
    req.on('end', () => {
      seen.push((JSON.parse(body) as { model: string }).model);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const t of ['hello', ' from', ' ollama']) {
        res.write(
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: t } }] })}\n\n`,
        );
      }
      res.write(
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      );
      res.end('data: [DONE]\n\n');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve({ server, host: `127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}`, models: seen });
    }),
  );
}

/** `leash serve` with LEASH_MODEL unset; resolves once it listens, with its stdout lines. */
async function serve(env: Record<string, string>, dbDir: string) {
  const proc = spawn(process.execPath, ['src/cli/main.ts', 'serve', '--port', '0'], {
    env: {
      ...process.env,
      LEASH_MODEL: '',
      LEASH_API_KEYS: '',
      LEASH_DB: join(dbDir, 'leash.db'),
      LEASH_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const lines = await new Promise<string[]>((resolve, reject) => {
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.split('\n').length >= 3) resolve(out.trim().split('\n'));
    });
    proc.on('close', (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  const url = /leash listening on (\S+)/.exec(lines[0]!)![1]!;
  return { proc, url, lines };
}

describe('the default model of a first run', () => {
  let dir: string;
  let ollama: Awaited<ReturnType<typeof fakeOllama>>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-default-model-'));
    ollama = await fakeOllama();
  });
  after(async () => {
    ollama.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('an Ollama that answers: its first model, named on the start line, used by a task that names none', async () => {
    const s = await serve({ OLLAMA_HOST: ollama.host }, dir);
    try {
      assert.equal(
        s.lines[1],
        `model ollama:llama3.2:1b: answers come from Ollama at http://${ollama.host} (model llama3.2:1b; set LEASH_MODEL to choose another)`,
      );
      const t = await api(s.url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt: 'hi' } } });
      const done = await api(s.url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`);
      assert.equal(done.body.status, 'completed', JSON.stringify(done.body.error));
      assert.equal(done.body.output_text, 'hello from ollama');
      assert.deepEqual(ollama.models, ['llama3.2:1b']);
      const models = await api(s.url, 'GET', '/v1/models');
      assert.ok(
        models.body.data.some((m: { id: string }) => m.id === 'ollama:llama3.2:1b'),
        'the default model is listed and allowed',
      );
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it('no Ollama: the simulated model, and the start line says so and how to get a real one', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const a = srv.address();
        srv.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 1));
      });
    });
    const s = await serve({ OLLAMA_HOST: `127.0.0.1:${closed}` }, dir);
    try {
      assert.match(
        s.lines[1]!,
        /^model simulated: answers are simulated .*OLLAMA_HOST.*LEASH_MODEL=openai:<model> with OPENAI_API_KEY/,
      );
    } finally {
      s.proc.kill('SIGKILL');
    }
  });

  it("an answer that is not Ollama's, or a server that hangs, is no model", async () => {
    const bad = async (body: string, status = 200) =>
      detectDefaultModel({ OLLAMA_HOST: 'x' }, 200, (async () => new Response(body, { status })) as typeof fetch);
    for (const [body, status] of [
      ['{"models": []}', 200],
      ['not json', 200],
      ['{"models": [{"name": "a b; rm"}]}', 200],
      ['{}', 500],
    ] as const) {
      assert.equal((await bad(body, status)).model, 'simulated', body);
    }
    const hang = (async (_u: unknown, init?: RequestInit) =>
      new Promise<Response>((_r, reject) =>
        init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)),
      )) as typeof fetch;
    assert.equal((await detectDefaultModel({}, 50, hang)).model, 'simulated');
  });
});
