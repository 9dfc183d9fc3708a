// The TypeScript worker (`leash/worker`) against a real `leash serve`: progress, output
// and result reach the task; a cancel aborts the handler's ctx.signal at once.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Worker, WorkerError } from 'leash/worker';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { api, readSse } from './helpers/server.ts';

let dir: string;
let server: ServeProcess;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'leash-tsworker-'));
  server = await startServeProcess('tsworker', {
    LEASH_DB: join(dir, 'leash.db'),
    LEASH_API_KEYS: 'k1:ann',
    LEASH_WORKER_TYPES: 'ts.echo,ts.wait',
  });
});
after(async () => {
  server.proc.kill('SIGKILL');
  await server.exited;
  await rm(dir, { recursive: true, force: true });
});

it('a TypeScript worker runs tasks and its ctx.signal aborts on cancel', async () => {
  let aborted: { at: number; reason: string } | null = null;
  const worker = new Worker({ url: server.url, apiKey: 'k1', slots: 2 })
    .task('ts.echo', async (input, ctx) => {
      const seqs = [await ctx.progress(50, 'half'), await ctx.emit('hello '), await ctx.emit('there')];
      return { got: input, seqs };
    })
    .task('ts.wait', async (_input, ctx) => {
      await new Promise<void>((resolve) =>
        ctx.signal.addEventListener(
          'abort',
          () => {
            aborted = { at: Date.now(), reason: String((ctx.signal.reason as Error).message) };
            resolve();
          },
          { once: true },
        ),
      );
      ctx.signal.throwIfAborted();
    });
  const running = worker.run();
  for (let i = 0; i < 200 && worker.workerId === null; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(worker.workerId);

  const t = await api(server.url, 'POST', '/api/tasks', { key: 'k1', body: { type: 'ts.echo', input: { a: 1 } } });
  const done = await api(server.url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`, { key: 'k1' });
  assert.equal(done.body.status, 'completed');
  const { seqs, ...result } = done.body.result;
  assert.deepEqual(result, { got: { a: 1 } });
  assert.equal(done.body.output_text, 'hello there');
  // Each ctx call resolved with the seq its event has for an SSE reader.
  const res = await fetch(`${server.url}/api/tasks/${t.body.id}/events`, { headers: { authorization: 'Bearer k1' } });
  const frames = await readSse(res);
  const seqOf = (event: string, text?: string): number | null | undefined =>
    frames.find((f) => f.event === event && (text === undefined || String(f.data.text).includes(text)))?.id;
  assert.deepEqual(seqs, [seqOf('task.progress'), seqOf('output.delta', 'hello'), seqOf('output.delta', 'there')]);

  const w = await api(server.url, 'POST', '/api/tasks', { key: 'k1', body: { type: 'ts.wait', input: {} } });
  for (let i = 0; i < 200; i++) {
    const list = await api(server.url, 'GET', '/api/workers', { key: 'k1' });
    if (list.body.data.some((x: { running: unknown[] }) => x.running.length > 0)) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const asked = Date.now();
  await api(server.url, 'POST', `/api/tasks/${w.body.id}/cancel`, { key: 'k1', body: {} });
  const end = await api(server.url, 'GET', `/api/tasks/${w.body.id}/wait?timeout_s=10`, { key: 'k1' });
  assert.equal(end.body.status, 'cancelled');
  assert.ok(aborted, 'the handler saw its signal');
  const seen = aborted as { at: number; reason: string };
  assert.match(seen.reason, /user/);
  assert.ok(seen.at - asked < 1000);
  worker.drain();
  await running;
});

it('a refused key and a wrong URL are WorkerErrors naming the cause', async () => {
  const bad = new Worker({ url: server.url, apiKey: 'nope' }).task('ts.echo', async () => 1);
  await assert.rejects(bad.run(), (e: unknown) => e instanceof WorkerError && e.code === 'unauthorized');
  const nowhere = new Worker({ url: 'http://127.0.0.1:1' }).task('ts.echo', async () => 1);
  await assert.rejects(nowhere.run(), (e: unknown) => e instanceof WorkerError && e.code === 'unreachable');
});

it('a declared input schema is checked at create (400 naming the field); a bad schema refuses the hello', async () => {
  const worker = new Worker({ url: server.url, apiKey: 'k1', slots: 1 }).task(
    'ts.typed',
    async (input) => ({ got: input }),
    { schema: { type: 'object', properties: { url: { type: 'string', minLength: 1 } }, required: ['url'] } },
  );
  const running = worker.run();
  for (let i = 0; i < 200 && worker.workerId === null; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(worker.workerId);
  const bad = await api(server.url, 'POST', '/api/tasks', { key: 'k1', body: { type: 'ts.typed', input: { url: 7 } } });
  assert.equal(bad.status, 400, JSON.stringify(bad.body));
  assert.equal(bad.body.error.code, 'invalid_request');
  assert.deepEqual(
    bad.body.error.details.map((d: { path: string }) => d.path),
    ['input.url'],
  );
  const ok = await api(server.url, 'POST', '/api/tasks', {
    key: 'k1',
    body: { type: 'ts.typed', input: { url: 'x' } },
  });
  const done = await api(server.url, 'GET', `/api/tasks/${ok.body.id}/wait?timeout_s=10`, { key: 'k1' });
  assert.deepEqual(done.body.result, { got: { url: 'x' } });
  worker.drain();
  await running;

  const broken = new Worker({ url: server.url, apiKey: 'k1', reconnect: false }).task('ts.broken', async () => 1, {
    schema: { type: 'no-such-type' },
  });
  await assert.rejects(
    broken.run(),
    (e: unknown) => e instanceof WorkerError && e.code === 'invalid_request' && /ts\.broken/.test(e.message),
  );
  // A refused hello declared nothing: the type is still unknown.
  const unknown = await api(server.url, 'POST', '/api/tasks', { key: 'k1', body: { type: 'ts.broken', input: {} } });
  assert.equal(unknown.body.error?.code, 'unknown_task_type');
});
