// useChat + LeashChatTransport in a real Chromium (issue 20): a Vite page in React
// StrictMode (development build, so effects really run twice) against a real leash
// server and a counting fake upstream, built once per AI SDK major with that
// version's @ai-sdk/react. The page is served from the leash server's origin
// (page.route), so its requests are same-origin like an app behind one host.
//
// ai 5, 6 and 7: (1) an answer streams and ends; (2) Stop cancels on the server;
// (3) reload mid-answer resumes with every token once; ai 6 and 7: (8) Stop on an
// answer resumed after a reload cancels it on the server. ai 7 also (every major
// with LEASH_AISDK_ALL=1): (4) StrictMode's double mount cancels nothing; (5) a cut
// SSE connection resumes with Last-Event-ID; (6) reload after Stop has nothing to
// resume; (7) a second tab sees the same answer.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { build, defaultClientConditions } from 'vite';
import { routeBuiltPage } from './helpers/browser.ts';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { api, eventually, type TestServer } from './helpers/server.ts';
import { FAKE_MODEL, startStack, type Stack } from './helpers/stack.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PAGE_SRC = join(ROOT, 'test', 'fixtures', 'ai-sdk-page');
const BASE = '/__aisdk/';
const tokens = (n: number, tag: string): string[] => Array.from({ length: n }, (_, i) => ` ${tag}${i}`);

async function buildPage(major: 5 | 6 | 7): Promise<string> {
  const outDir = await mkdtemp(join(tmpdir(), `leash-aisdk-page-v${major}-`));
  await build({
    root: PAGE_SRC,
    base: BASE,
    configFile: false,
    logLevel: 'error', // swr's 'use client' warnings are noise here
    mode: 'development',
    define: { 'process.env.NODE_ENV': JSON.stringify('development') },
    resolve: {
      conditions: ['leash-source', ...defaultClientConditions],
      alias: [
        { find: /^@ai-sdk\/react-v7$/, replacement: `@ai-sdk/react-v${major}` },
        { find: /^leash\/ai-sdk$/, replacement: join(ROOT, 'src', 'client', 'ai-sdk.ts') },
      ],
    },
    build: { outDir, emptyOutDir: true, minify: false },
  });
  return outDir;
}

const ALL = process.env.LEASH_AISDK_ALL === '1';

for (const major of [5, 6, 7] as const) {
  describe(`useChat (ai ${major}) on leash in Chromium`, () => {
    let stack: Stack;
    let upstream: FakeUpstream;
    let s: TestServer;
    let ctx: BrowserContext;
    let dir: string;

    before(async () => {
      dir = await buildPage(major);
      stack = await startStack({
        upstream: { behaviour: 'stream', intervalMs: 20, tokens: tokens(10, 'a') },
        allow: ['simulated*', FAKE_MODEL],
        browser: true,
      });
      ({ s, upstream, ctx } = stack);
      await routeBuiltPage(ctx, s.url, BASE, dir);
    });
    after(async () => {
      await stack?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    const newChat = async (): Promise<string> => (await api(s.url, 'POST', '/api/threads', { body: {} })).body.id;
    const open = async (chat: string, page?: Page): Promise<Page> => {
      const p = page ?? (await ctx.newPage());
      await p.goto(`${s.url}${BASE}index.html?chat=${chat}`);
      await p.locator('main').waitFor();
      return p;
    };
    const send = async (page: Page, text: string): Promise<void> => {
      await page.getByRole('textbox', { name: 'Message' }).fill(text);
      await page.getByRole('button', { name: 'Send' }).click();
    };
    const answers = (page: Page): Promise<string[]> =>
      page.$$eval('.msg.assistant', (els) => els.map((e) => e.textContent ?? ''));
    const status = (page: Page): Promise<string | null> => page.locator('main').getAttribute('data-status');
    const lastTask = async (chat: string) => {
      const msgs = (await api(s.url, 'GET', `/api/threads/${chat}/messages`)).body.data;
      const answer = msgs.filter((m: { role: string }) => m.role === 'assistant').at(-1);
      return { answer, task: (await api(s.url, 'GET', `/api/tasks/${answer.task_id}`)).body };
    };
    const errors = (page: Page): Promise<string[]> =>
      page.evaluate(() => (window as unknown as { __errors: string[] }).__errors);
    /** Waits until the page shows exactly `full` as its one answer, ready. */
    const showsOnce = (page: Page, full: string, timeoutMs = 20_000) =>
      eventually(async () => {
        const a = await answers(page);
        return a.length === 1 && a[0] === full && (await status(page)) === 'ready';
      }, timeoutMs).catch(async (e) => {
        throw new Error(`${e}: shown ${JSON.stringify(await answers(page))}, status ${await status(page)}`);
      });

    it('(1) an answer streams and ends', async () => {
      const t = tokens(30, 'one');
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: t };
      const chat = await newChat();
      const page = await open(chat);
      await send(page, 'hello');
      await eventually(async () => (await answers(page))[0]?.includes(' one3') ?? false);
      assert.equal(await status(page), 'streaming');
      await showsOnce(page, t.join(''));
      const { task, answer } = await lastTask(chat);
      assert.equal(task.status, 'completed');
      assert.equal(answer.content, t.join(''));
      assert.equal(await page.locator('.msg.assistant').getAttribute('data-id'), answer.id);
      assert.deepEqual(await errors(page), []);
      await page.close();
    });

    it('(2) Stop cancels the task on the server, closes the upstream socket, no more text; history keeps the partial answer as stopped', async () => {
      const t = tokens(400, 'two');
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: t };
      const n = upstream.requests.length;
      const chat = await newChat();
      const page = await open(chat);
      await send(page, 'a long one');
      await eventually(async () => ((await answers(page))[0]?.length ?? 0) > 40);
      await page.getByRole('button', { name: 'Stop' }).click();
      const { task } = await eventually(async () => {
        const x = await lastTask(chat);
        return x.task.status === 'cancelled' ? x : null;
      });
      assert.equal(task.cancel.reason, 'user');
      const req = upstream.requests[n]!;
      await upstream.waitForSocketClose(req, 5000);
      assert.ok(req.tokensWritten < t.length);
      const shown = (await answers(page))[0]!;
      await new Promise((r) => setTimeout(r, 400));
      assert.equal((await answers(page))[0], shown, 'no text after Stop');
      assert.equal(await status(page), 'ready');
      const { answer } = await lastTask(chat);
      assert.equal(answer.status, 'cancelled');
      assert.ok(answer.content.length > 0);
      assert.ok(answer.content.startsWith(shown), 'the stored partial answer holds what was shown');
      await page.close();
      if (major !== 7 && !ALL) return;
      // (6) reload after Stop: nothing to resume, the partial answer shown once, marked stopped.
      const again = await open(chat);
      await showsOnce(again, answer.content);
      assert.equal(await again.locator('.msg.assistant').getAttribute('data-answer'), 'cancelled');
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(await answers(again), [answer.content]);
      assert.equal((await lastTask(chat)).task.status, 'cancelled');
      await again.close();
    });

    it('(3) reload mid-answer: the answer resumes, every token exactly once, in one message', async () => {
      const t = tokens(120, 'three');
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: t };
      const chat = await newChat();
      const page = await open(chat);
      await send(page, 'reload me');
      await eventually(async () => ((await answers(page))[0]?.length ?? 0) > 30);
      await page.reload();
      await page.locator('main').waitFor();
      // Resumed while it still streams (not merely loaded once ended).
      await eventually(async () => (await status(page)) === 'streaming');
      assert.equal((await lastTask(chat)).task.status, 'running');
      await showsOnce(page, t.join(''));
      assert.equal(await page.locator('.msg.user').count(), 1);
      assert.equal((await lastTask(chat)).task.status, 'completed');
      assert.deepEqual(await errors(page), []);
      await page.close();
    });

    it('(8) Stop on an answer resumed after a reload cancels it on the server (ai >= 6: reconnectToStream gets a signal)', async (t) => {
      if (major === 5)
        return t.skip('ai 5 gives reconnectToStream no abort signal: its stop() cannot reach a resumed answer');
      const long = tokens(400, 'eight');
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: long };
      const chat = await newChat();
      const page = await open(chat);
      await send(page, 'reload then stop');
      await eventually(async () => ((await answers(page))[0]?.length ?? 0) > 30);
      await page.reload();
      await page.locator('main').waitFor();
      await eventually(async () => (await status(page)) === 'streaming');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal((await lastTask(chat)).task.status, 'running', 'the resume itself stopped nothing');
      await page.getByRole('button', { name: 'Stop' }).click();
      const { task } = await eventually(async () => {
        const x = await lastTask(chat);
        return x.task.status === 'cancelled' ? x : null;
      });
      assert.equal(task.cancel.reason, 'user');
      assert.equal(await status(page), 'ready');
      await page.close();
    });

    // 4–7 on the latest major (LEASH_AISDK_ALL=1: on every major; they pass on ai 5 and 6 too).
    if (major !== 7 && !ALL) return;

    it('(4) StrictMode double mount cancels nothing', async () => {
      const t = tokens(80, 'four');
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: t };
      const chat = await newChat();
      const run = await api(s.url, 'POST', `/api/threads/${chat}/runs`, { body: { content: 'mount twice' } });
      await eventually(async () => (await api(s.url, 'GET', `/api/tasks/${run.body.id}`)).body.output_text.length > 5);
      const page = await open(chat);
      await eventually(
        async () => (await page.evaluate(() => (window as unknown as { __mounts: number }).__mounts)) >= 2,
      );
      await showsOnce(page, t.join(''));
      const task = (await api(s.url, 'GET', `/api/tasks/${run.body.id}`)).body;
      assert.equal(task.status, 'completed');
      assert.equal(task.cancel, null);
      await page.close();
    });

    it('(5) the SSE connection cut once: resumed with Last-Event-ID, nothing twice', async () => {
      const t = tokens(60, 'five');
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: t };
      const chat = await newChat();
      const page = await open(chat);
      const lastEventIds: (string | null)[] = [];
      await page.route('**/api/tasks/*/events?format=ai-sdk*', async (route) => {
        const headers = route.request().headers();
        lastEventIds.push(headers['last-event-id'] ?? null);
        if (lastEventIds.length > 1) return route.continue();
        // The first connection: pass what the server sent until a few text deltas, then end it.
        const res = await fetch(route.request().url(), { headers });
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let got = '';
        while ((got.match(/"text-delta"/g) ?? []).length < 5) got += (await reader.read()).value ?? '';
        await reader.cancel();
        await route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: got });
      });
      await send(page, 'cut me once');
      await showsOnce(page, t.join(''));
      assert.equal(lastEventIds.length, 2);
      assert.equal(lastEventIds[0], null);
      assert.match(String(lastEventIds[1]), /^\d+$/);
      assert.deepEqual(await errors(page), []);
      await page.close();
    });

    it('(7) a second tab on the same chat sees the same answer stream', async () => {
      const t = tokens(100, 'seven');
      upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: t };
      const chat = await newChat();
      const a = await open(chat);
      await send(a, 'two tabs');
      await eventually(async () => ((await answers(a))[0]?.length ?? 0) > 20);
      const b = await open(chat);
      await eventually(async () => (await status(b)) === 'streaming');
      await Promise.all([showsOnce(a, t.join('')), showsOnce(b, t.join(''))]);
      assert.equal(upstream.requests.filter((r) => JSON.stringify(r.body).includes('two tabs')).length, 1);
      await a.close();
      await b.close();
    });
  });
}
