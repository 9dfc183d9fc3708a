// The tasks view shows where a task runs: a task taken by a remote worker names that
// worker in its detail panel (from GET /api/workers) while it runs.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, type TestBrowser } from './helpers/browser.ts';
import { api } from './helpers/server.ts';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { ensureWebBuilt } from './helpers/web-build.ts';
import { Worker } from '../src/worker/index.ts';
import { startPyWorker, waitForMarker } from './helpers/python-worker.ts';

describe('web UI: where a task runs', () => {
  let dir: string;
  let s: ServeProcess;
  let browser: TestBrowser;
  before(async () => {
    ensureWebBuilt();
    dir = await mkdtemp(join(tmpdir(), 'leash-web-workers-'));
    s = await startServeProcess('web-workers', { LEASH_DB: join(dir, 'leash.db'), LEASH_WORKER_TYPES: 'ts.wait' });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    s?.proc.kill('SIGKILL');
    await s?.exited;
    await rm(dir, { recursive: true, force: true });
  });

  it('a task on a remote worker names the worker in the task detail', async () => {
    const worker = new Worker({ url: s.url, slots: 3 }).task('ts.wait', async (_input, ctx) => {
      await ctx.progress(10, 'waiting for a cancel');
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
      ctx.signal.throwIfAborted();
    });
    const running = worker.run();
    try {
      for (let i = 0; i < 300 && worker.workerId === null; i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(worker.workerId, 'the worker connected');
      const t = await api(s.url, 'POST', '/api/tasks', { body: { type: 'ts.wait', input: {} } });
      assert.equal(t.status, 202, JSON.stringify(t.body));
      const ctx = await browser.newContext();
      try {
        const page = await ctx.newPage();
        await page.goto(`${s.url}/tasks/${t.body.id}`);
        const line = page.locator('.runs-on');
        await line.waitFor({ timeout: 15_000 });
        assert.equal(await line.getAttribute('data-worker-id'), worker.workerId);
        assert.match(await line.innerText(), /^Runs on remote worker \S+.*1 of 3 slots busy$/);
        await api(s.url, 'POST', `/api/tasks/${t.body.id}/cancel`, { body: {} });
        await line.waitFor({ state: 'detached', timeout: 15_000 });
      } finally {
        await ctx.close();
      }
    } finally {
      worker.drain();
      await running;
    }
  });

  it("README's path: a Python function runs as a task, shows in the tasks view, and its Cancel button raises CancelledError in it", async () => {
    const py = await startPyWorker(s.url);
    try {
      assert.ok(py.id, py.output());
      const started = join(dir, 'py-started');
      const marker = join(dir, 'py-cancelled');
      const t = await api(s.url, 'POST', '/api/tasks', { body: { type: 'py.sleepy', input: { started, marker } } });
      assert.equal(t.status, 202, JSON.stringify(t.body));
      await waitForMarker(started);
      const ctx = await browser.newContext();
      try {
        const page = await ctx.newPage();
        await page.goto(`${s.url}/tasks/${t.body.id}`);
        const line = page.locator('.runs-on');
        await line.waitFor({ timeout: 15_000 });
        assert.equal(await line.getAttribute('data-worker-id'), py.id);
        await page.getByRole('button', { name: 'Cancel', exact: true }).click(); // the detail panel's
        const m = await waitForMarker(marker);
        assert.equal(m.kind, 'CancelledError');
        assert.equal(m.reason, 'user');
        await line.waitFor({ state: 'detached', timeout: 15_000 });
      } finally {
        await ctx.close();
      }
      const end = await api(s.url, 'GET', `/api/tasks/${t.body.id}/wait?timeout_s=10`);
      assert.equal(end.body.status, 'cancelled');
    } finally {
      await py.stop();
    }
  });
});
