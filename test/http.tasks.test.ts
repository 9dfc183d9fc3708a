// The task routes of SPEC §1 against a real server on an ephemeral port.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { api, eventually, startTestServer } from './helpers/server.ts';
import type { TestServer } from './helpers/server.ts';

/** ~forever at this rate: only a cancel or shutdown ends it. */
const SLOW = 'simulated?tps=20&tokens=100000';
const FAST = 'simulated?tps=0&tokens=8';

const gen = (model: string, prompt = 'hello'): { type: string; input: unknown } => ({
  type: 'generate',
  input: { prompt, model },
});

async function running(s: TestServer, id: string): Promise<void> {
  await eventually(async () => (await api(s.url, 'GET', `/api/tasks/${id}`)).body.status === 'running');
}

describe('task routes', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ runtime: { maxRunningPerOwner: 50 } });
  });
  after(() => s.close());

  it('creates a task: 202, Location, queued, then GET shows it with recent progress', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: gen(FAST) });
    assert.equal(r.status, 202);
    assert.match(r.body.id, /^task_[0-9a-z]{20}$/);
    assert.equal(r.body.type, 'generate');
    assert.equal(r.body.owner, 'local');
    assert.equal(r.headers.get('location'), `/api/tasks/${r.body.id}`);
    assert.ok(['queued', 'running', 'completed'].includes(r.body.status));

    const w = await api(s.url, 'GET', `/api/tasks/${r.body.id}/wait?timeout_s=30`);
    assert.equal(w.status, 200);
    assert.equal(w.body.status, 'completed');
    assert.equal(typeof w.body.result.text, 'string');
    assert.ok(w.body.result.text.length > 0);
    assert.equal(w.body.output_text, w.body.result.text);

    const g = await api(s.url, 'GET', `/api/tasks/${r.body.id}`);
    assert.equal(g.status, 200);
    assert.equal(g.body.id, r.body.id);
    assert.ok(Array.isArray(g.body.recent_progress));
    assert.ok(g.body.recent_progress.length > 0);
    assert.equal(g.body.recent_progress.at(-1).progress, 100);
  });

  it('wait answers with the task as it is at the timeout', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    const t0 = Date.now();
    const w = await api(s.url, 'GET', `/api/tasks/${r.body.id}/wait?timeout_s=0.3`);
    assert.equal(w.status, 200);
    assert.ok(['queued', 'running'].includes(w.body.status), w.body.status);
    assert.ok(Date.now() - t0 >= 250, 'waited about the timeout');
    const c = await api(s.url, 'POST', `/api/tasks/${r.body.id}/cancel`);
    assert.ok(c.status === 202 || c.status === 200);
  });

  it('wait validates timeout_s (0..300)', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: gen(FAST) });
    for (const bad of ['301', '-1', 'abc']) {
      const w = await api(s.url, 'GET', `/api/tasks/${r.body.id}/wait?timeout_s=${bad}`);
      assert.equal(w.status, 400, bad);
      assert.equal(w.body.error.code, 'invalid_request');
      assert.equal(w.body.error.details[0].path, 'timeout_s');
    }
  });

  it('cancel of a running task: 202 cancelling → cancelled (reason user, partial output kept); again → 200', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    const id = r.body.id;
    await eventually(async () => (await api(s.url, 'GET', `/api/tasks/${id}`)).body.output_text.length > 0);

    const c = await api(s.url, 'POST', `/api/tasks/${id}/cancel`, { body: {} });
    assert.equal(c.status, 202);
    assert.equal(c.body.status, 'cancelling');
    assert.equal(c.body.cancel.reason, 'user');

    const w = await api(s.url, 'GET', `/api/tasks/${id}/wait?timeout_s=30`);
    assert.equal(w.body.status, 'cancelled');
    assert.equal(w.body.cancel.reason, 'user');
    assert.ok(w.body.output_text.length > 0, 'partial output kept');

    const again = await api(s.url, 'POST', `/api/tasks/${id}/cancel`);
    assert.equal(again.status, 200);
    assert.equal(again.body.status, 'cancelled');
    assert.equal(again.body.cancel.reason, 'user', 'the first reason stays');
  });

  it('cancel accepts a reason and rejects an unknown one', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    const bad = await api(s.url, 'POST', `/api/tasks/${r.body.id}/cancel`, { body: { reason: 'bored' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.details[0].path, 'reason');
    const c = await api(s.url, 'POST', `/api/tasks/${r.body.id}/cancel`, { body: { reason: 'interrupted' } });
    assert.ok(c.status === 200 || c.status === 202);
    const w = await api(s.url, 'GET', `/api/tasks/${r.body.id}/wait?timeout_s=30`);
    assert.equal(w.body.cancel.reason, 'interrupted');
  });

  it('a bodiless cancel with a JSON content type is accepted', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    const c = await api(s.url, 'POST', `/api/tasks/${r.body.id}/cancel`, {
      rawBody: '',
      headers: { 'content-type': 'application/json' },
    });
    assert.ok(c.status === 200 || c.status === 202, String(c.status));
  });

  it('cancel of a completed task: 409 task_ended with its status', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: gen(FAST) });
    await api(s.url, 'GET', `/api/tasks/${r.body.id}/wait?timeout_s=30`);
    const c = await api(s.url, 'POST', `/api/tasks/${r.body.id}/cancel`);
    assert.equal(c.status, 409);
    assert.equal(c.body.error.code, 'task_ended');
    assert.deepEqual(c.body.error.details, { status: 'completed' });
  });

  it('unknown ids answer 404 not_found on every task route', async () => {
    const id = 'task_doesnotexist000000';
    const calls: Array<[string, string]> = [
      ['GET', `/api/tasks/${id}`],
      ['POST', `/api/tasks/${id}/cancel`],
      ['GET', `/api/tasks/${id}/events`],
      ['GET', `/api/tasks/${id}/wait?timeout_s=1`],
      ['DELETE', `/api/tasks/${id}`],
      ['GET', `/api/tasks/${'x'.repeat(500)}`],
    ];
    for (const [method, path] of calls) {
      const r = await api(s.url, method, path);
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.equal(r.body.error.code, 'not_found');
    }
  });

  it('delete: 409 task_active while it runs, 204 once ended, then 404', async () => {
    const r = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    const id = r.body.id;
    const d1 = await api(s.url, 'DELETE', `/api/tasks/${id}`);
    assert.equal(d1.status, 409);
    assert.equal(d1.body.error.code, 'task_active');
    await api(s.url, 'POST', `/api/tasks/${id}/cancel`);
    await api(s.url, 'GET', `/api/tasks/${id}/wait?timeout_s=30`);
    const d2 = await api(s.url, 'DELETE', `/api/tasks/${id}`);
    assert.equal(d2.status, 204);
    assert.equal(d2.body, '');
    assert.equal((await api(s.url, 'GET', `/api/tasks/${id}`)).status, 404);
    assert.equal((await api(s.url, 'DELETE', `/api/tasks/${id}`)).status, 404);
  });

  it('Idempotency-Key: the same key returns the same task; a different key a new one', async () => {
    const key = `idem-${Date.now()}`;
    const a = await api(s.url, 'POST', '/api/tasks', { body: gen(FAST), headers: { 'idempotency-key': key } });
    const b = await api(s.url, 'POST', '/api/tasks', { body: gen(FAST), headers: { 'idempotency-key': key } });
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.equal(b.body.id, a.body.id);
    assert.equal(a.headers.get('idempotent-replayed'), null);
    assert.equal(b.headers.get('idempotent-replayed'), 'true');
    const c = await api(s.url, 'POST', '/api/tasks', { body: gen(FAST), headers: { 'idempotency-key': key + 'x' } });
    assert.notEqual(c.body.id, a.body.id);

    const max = await api(s.url, 'POST', '/api/tasks', {
      body: gen(FAST),
      headers: { 'idempotency-key': 'k'.repeat(255) },
    });
    assert.equal(max.status, 202);
    const long = await api(s.url, 'POST', '/api/tasks', {
      body: gen(FAST),
      headers: { 'idempotency-key': 'k'.repeat(256) },
    });
    assert.equal(long.status, 400);
    assert.equal(long.body.error.code, 'invalid_request');
    assert.equal(long.body.error.details[0].path, 'Idempotency-Key');
  });

  it('unknown task type: 400 unknown_task_type; bad input: 400 invalid_request naming input fields', async () => {
    const u = await api(s.url, 'POST', '/api/tasks', { body: { type: 'nope', input: {} } });
    assert.equal(u.status, 400);
    assert.equal(u.body.error.code, 'unknown_task_type');
    assert.match(u.body.error.message, /generate/, 'lists the known types');

    const b = await api(s.url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt: 7 } } });
    assert.equal(b.status, 400);
    assert.equal(b.body.error.code, 'invalid_request');
    assert.ok(b.body.error.details.some((d: { path: string }) => d.path === 'input.prompt'));
  });

  it('lists with filters and a cursor: every task once, in pages', async () => {
    const own = await startTestServer();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++)
        ids.push((await api(own.url, 'POST', '/api/tasks', { body: gen(FAST, `p${i}`) })).body.id);
      const slow = (await api(own.url, 'POST', '/api/tasks', { body: gen(SLOW) })).body.id;
      for (const id of ids) await api(own.url, 'GET', `/api/tasks/${id}/wait?timeout_s=30`);

      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const q: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
        const r = await api(own.url, 'GET', `/api/tasks?status=completed&limit=2${q}`);
        assert.equal(r.status, 200);
        assert.ok(r.body.data.length <= 2);
        for (const t of r.body.data) {
          assert.equal(t.status, 'completed');
          seen.push(t.id);
        }
        cursor = r.body.next_cursor;
        pages++;
      } while (cursor !== null && pages < 10);
      assert.deepEqual([...seen].sort(), [...ids].sort());
      assert.equal(new Set(seen).size, seen.length, 'no duplicates across pages');
      assert.ok(pages >= 3);

      const active = await api(own.url, 'GET', '/api/tasks?status=queued,running');
      assert.deepEqual(
        active.body.data.map((t: { id: string }) => t.id),
        [slow],
      );
      const repeated = await api(own.url, 'GET', '/api/tasks?status=queued&status=running');
      assert.deepEqual(
        repeated.body.data.map((t: { id: string }) => t.id),
        [slow],
      );
      const none = await api(own.url, 'GET', '/api/tasks?type=analyze');
      assert.deepEqual(none.body, { data: [], next_cursor: null });
      const all = await api(own.url, 'GET', '/api/tasks?type=generate&limit=200');
      assert.equal(all.body.data.length, 6);

      const bad = await api(own.url, 'GET', '/api/tasks?status=bogus&limit=0');
      assert.equal(bad.status, 400);
      const paths = bad.body.error.details.map((d: { path: string }) => d.path);
      assert.ok(
        paths.some((p: string) => p.startsWith('status')),
        paths.join(),
      );
      assert.ok(paths.includes('limit'), paths.join());
      const badCursor = await api(own.url, 'GET', '/api/tasks?cursor=%24%24%24');
      assert.equal(badCursor.status, 400);
    } finally {
      await own.close();
    }
  });

  it('batch cancel: by created_before, then everything active; ended tasks are left alone', async () => {
    const own = await startTestServer();
    try {
      const done = (await api(own.url, 'POST', '/api/tasks', { body: gen(FAST) })).body.id;
      await api(own.url, 'GET', `/api/tasks/${done}/wait?timeout_s=30`);
      const a = (await api(own.url, 'POST', '/api/tasks', { body: gen(SLOW) })).body;
      const b = (await api(own.url, 'POST', '/api/tasks', { body: gen(SLOW) })).body;
      await new Promise((r) => setTimeout(r, 5));
      const cut = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 5));
      const c = (await api(own.url, 'POST', '/api/tasks', { body: gen(SLOW) })).body;

      const first = await api(own.url, 'POST', '/api/tasks/cancel', { body: { created_before: cut } });
      assert.equal(first.status, 200);
      assert.equal(first.body.cancelled, 2);
      assert.deepEqual([...first.body.ids].sort(), [a.id, b.id].sort());
      for (const id of [a.id, b.id]) {
        const w = await api(own.url, 'GET', `/api/tasks/${id}/wait?timeout_s=30`);
        assert.equal(w.body.status, 'cancelled');
        assert.equal(w.body.cancel.reason, 'batch');
      }
      assert.ok(['queued', 'running'].includes((await api(own.url, 'GET', `/api/tasks/${c.id}`)).body.status));

      const rest = await api(own.url, 'POST', '/api/tasks/cancel');
      assert.equal(rest.status, 200);
      assert.deepEqual(rest.body, { cancelled: 1, ids: [c.id] });
      assert.equal((await api(own.url, 'GET', `/api/tasks/${done}`)).body.status, 'completed');

      const bad = await api(own.url, 'POST', '/api/tasks/cancel', {
        body: { status: 'bogus', created_before: 'yesterday' },
      });
      assert.equal(bad.status, 400);
      const paths = bad.body.error.details.map((d: { path: string }) => d.path);
      assert.ok(paths.includes('created_before'), paths.join());
    } finally {
      await own.close();
    }
  });
});

describe('per-owner limits', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ runtime: { maxRunningPerOwner: 1, maxQueuedPerOwner: 2 } });
  });
  after(() => s.close());

  it('429 queue_full past the queued limit; cancelling a queued task frees a slot (200 cancelled)', async () => {
    const a = (await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) })).body;
    await running(s, a.id);
    const b = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    const c = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    assert.equal(b.status, 202);
    assert.equal(c.status, 202);
    const d = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    assert.equal(d.status, 429);
    assert.equal(d.body.error.code, 'queue_full');
    assert.equal((await api(s.url, 'GET', `/api/tasks/${b.body.id}`)).body.status, 'queued', 'one runs at a time');

    // A queued task stops at once: 200 with status cancelled.
    const cb = await api(s.url, 'POST', `/api/tasks/${b.body.id}/cancel`);
    assert.equal(cb.status, 200);
    assert.equal(cb.body.status, 'cancelled');
    const e = await api(s.url, 'POST', '/api/tasks', { body: gen(SLOW) });
    assert.equal(e.status, 202);

    const all = await api(s.url, 'POST', '/api/tasks/cancel', { body: { status: ['queued', 'running'] } });
    assert.equal(all.body.cancelled, 3);
  });
});
