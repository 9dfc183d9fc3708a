// Remote task types are their owner's (docs/workers.md): a type name one owner's workers
// declared is unknown to every other owner — a create answers 400 `unknown_task_type`
// and the known types it lists leave the name out, so nothing reveals it and nothing
// waits queued for workers that will never take it — and each owner declares its own
// input schema for a name, a conflict being between one owner's workers only. Still so
// after a restart (the declarations are stored per owner). The hostile caller here is
// another tenant: bob guessing, squatting and racing ann's type names.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { Worker, WorkerError } from 'leash/worker';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { api } from './helpers/server.ts';

let dir: string;
let server: ServeProcess;
const workers: Worker[] = [];

const start = (): Promise<ServeProcess> =>
  startServeProcess('owner-types', {
    LEASH_DB: join(dir, 'leash.db'),
    LEASH_API_KEYS: 'ka:ann,kb:bob,kc:cid',
    LEASH_WORKER_TYPES: 'shared.t',
  });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'leash-owner-types-'));
  server = await start();
});
after(async () => {
  for (const w of workers) w.stop();
  server.proc.kill('SIGKILL');
  await server.exited;
  await rm(dir, { recursive: true, force: true });
});

const ANN_SCHEMA = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
const BOB_SCHEMA = { type: 'object', properties: { s: { type: 'string' } }, required: ['s'] };

/** A connected worker of `key` serving `types` (each answering `null`); rejects with the hello's refusal. */
async function connect(key: string, types: string[], setUp?: (w: Worker) => Worker): Promise<Worker> {
  let w = new Worker({ url: server.url, apiKey: key, slots: 2 });
  for (const t of types) w.task(t, async () => null);
  if (setUp) w = setUp(w);
  workers.push(w);
  const running = w.run();
  running.catch(() => {});
  for (let i = 0; i < 300 && w.workerId === null; i++) {
    const failed = await Promise.race([
      running.then(
        () => false,
        (e: unknown) => e,
      ),
      new Promise((r) => setTimeout(() => r(null), 10)),
    ]);
    if (failed) throw failed;
  }
  assert.ok(w.workerId, `a worker of ${key} connected`);
  return w;
}

/** A worker of `key` serving `type` with `schema`, echoing its input and `tag`. */
const serve = (key: string, type: string, schema: Record<string, unknown>, tag: string): Promise<Worker> =>
  connect(key, [], (w) => w.task(type, async (input) => ({ tag, input }), { schema }));

const create = (key: string, type: string, input: unknown) =>
  api(server.url, 'POST', '/api/tasks', { key, body: { type, input } });
const waitDone = async (key: string, id: string) =>
  (await api(server.url, 'GET', `/api/tasks/${id}/wait?timeout_s=10`, { key })).body;

it("another owner's remote type is unknown to bob: 400 unknown_task_type, not listed, nothing queued", async () => {
  await serve('ka', 'own.t', ANN_SCHEMA, 'ann');
  const r = await create('kb', 'own.t', { n: 1 });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'unknown_task_type');
  const known = String(r.body.error.message).split('Known types:')[1] ?? '';
  assert.ok(!known.includes('own.t'), `bob is not told ann's type: ${r.body.error.message}`);
  assert.ok(known.includes('generate') && known.includes('shared.t'), 'built-in and operator types are everyone’s');
  // The same answer as for a name nobody declared (nothing tells the two apart).
  const none = await create('kb', 'nobody.t', { n: 1 });
  assert.equal(none.status, 400);
  assert.equal(none.body.error.code, 'unknown_task_type');
  assert.equal(none.body.error.message.split('Known types:')[1], r.body.error.message.split('Known types:')[1]);
  const bobs = await api(server.url, 'GET', '/api/tasks?limit=100', { key: 'kb' });
  assert.equal(bobs.body.data.length, 0, 'no task of bob waits for ann’s workers');

  // ann's own create: checked with her schema, then run by her worker.
  const bad = await create('ka', 'own.t', { n: 'x' });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'invalid_request');
  const ok = await create('ka', 'own.t', { n: 7 });
  assert.equal(ok.status, 202);
  const done = await waitDone('ka', ok.body.id);
  assert.equal(done.status, 'completed');
  assert.deepEqual(done.result, { tag: 'ann', input: { n: 7 } });
});

it('bob may serve the same name with his own schema (no type_conflict across owners); each create is checked by its owner’s', async () => {
  await serve('kb', 'own.t', BOB_SCHEMA, 'bob');
  const bobOk = await create('kb', 'own.t', { s: 'hi' });
  assert.equal(bobOk.status, 202, JSON.stringify(bobOk.body));
  const bobDone = await waitDone('kb', bobOk.body.id);
  assert.deepEqual(bobDone.result, { tag: 'bob', input: { s: 'hi' } }, "bob's task ran on bob's worker");
  const bobBad = await create('kb', 'own.t', { n: 1 });
  assert.equal(bobBad.status, 400, 'bob’s schema, not ann’s');
  const annBad = await create('ka', 'own.t', { s: 'hi' });
  assert.equal(annBad.status, 400, 'ann’s schema, not bob’s');
  const annOk = await create('ka', 'own.t', { n: 2 });
  assert.deepEqual((await waitDone('ka', annOk.body.id)).result, { tag: 'ann', input: { n: 2 } });
});

it("a second worker of one owner with another schema is that owner's type_conflict", async () => {
  await assert.rejects(
    serve('ka', 'own.t', BOB_SCHEMA, 'ann-2'),
    (e: unknown) => e instanceof WorkerError && e.code === 'type_conflict' && !e.message.includes('bob'),
  );
});

it('after a restart, before any worker is back: still per owner (the declarations are stored per owner)', async () => {
  for (const w of workers.splice(0)) w.stop();
  server.proc.kill('SIGKILL');
  await server.exited;
  server = await start();
  const cid = await create('kc', 'own.t', { n: 1 });
  assert.equal(cid.status, 400);
  assert.equal(cid.body.error.code, 'unknown_task_type');
  // ann's stored schema checks her creates; the task waits for her worker.
  assert.equal((await create('ka', 'own.t', { s: 'x' })).status, 400);
  const queued = await create('ka', 'own.t', { n: 3 });
  assert.equal(queued.status, 202);
  assert.equal(queued.body.status, 'queued');
  assert.equal((await create('kb', 'own.t', { n: 3 })).status, 400, 'bob’s stored schema');
  await serve('ka', 'own.t', ANN_SCHEMA, 'ann');
  assert.deepEqual((await waitDone('ka', queued.body.id)).result, { tag: 'ann', input: { n: 3 } });
});

it('one owner may declare at most 256 types; past it a hello is refused whole, and another owner still declares', async () => {
  const many = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}.${i}`);
  // cid has none yet (the test before declared ann's own.t): 4 hellos of 64 fill cid's 256.
  for (let k = 0; k < 4; k++) await connect('kc', many(`cap${k}`, 64));
  const refused = (e: unknown) => e instanceof WorkerError && e.code === 'too_many_types';
  await assert.rejects(connect('kc', ['cap.over']), refused);
  // A refused hello declares nothing of itself.
  const r = await create('kc', 'cap.over', {});
  assert.equal(r.body.error?.code, 'unknown_task_type');
  // The types cid has stay usable; bob is not held back by cid's full table.
  assert.equal((await create('kc', 'cap0.1', {})).status, 202);
  await connect('kb', ['bob.extra']);
  assert.equal((await create('kb', 'bob.extra', {})).status, 202);
});
