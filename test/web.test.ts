// The web UI in a real Chromium (Debian's, driven by playwright-core) against a
// real server serving web/dist. The default model is an `openai:` model pointed
// at the fake upstream, so a Stop in the browser can be followed all the way to
// the aborted upstream request. Screenshots go to test-artifacts/.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { registerWebUi } from '../src/server/static.ts';
import { CUT_SHORT_NOTE } from '../src/threads/context.ts';
import type { TestBrowser } from './helpers/browser.ts';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { api, eventually, type TestServer } from './helpers/server.ts';
import { startStack, type Stack } from './helpers/stack.ts';
import { ensureWebBuilt } from './helpers/web-build.ts';

const ROOT = join(import.meta.dirname, '..');
const ARTIFACTS = join(ROOT, 'test-artifacts');

// 120 tokens, 25 ms apart: ~3 s per answer, long enough to stop or reload mid-way.
const TOKENS = Array.from({ length: 120 }, (_, i) => ` w${i}`);
const FULL_ANSWER = TOKENS.join('');

const assistant = (page: Page) => page.locator('.msg.assistant');
const composer = (page: Page) => page.getByRole('textbox', { name: 'Message' });

async function send(page: Page, text: string): Promise<void> {
  await composer(page).fill(text);
  await composer(page).press('Enter');
}

/** Text of the last assistant bubble once it has at least `min` characters. */
async function waitForText(page: Page, min: number): Promise<string> {
  const bubble = assistant(page).last().locator('.text');
  await eventually(
    async () => ((await bubble.count()) > 0 && (await bubble.innerText()).length >= min) || null,
    15_000,
  );
  return bubble.innerText();
}

describe('web UI', () => {
  let upstream: FakeUpstream;
  let s: TestServer;
  let browser: TestBrowser;
  let ctx: BrowserContext;
  let stack: Stack;

  before(async () => {
    ensureWebBuilt();
    mkdirSync(ARTIFACTS, { recursive: true });
    stack = await startStack({ upstream: { behaviour: 'stream', intervalMs: 25, tokens: TOKENS }, browser: true });
    ({ s, upstream, browser, ctx } = stack);
  });
  after(() => stack?.close());

  it('serves the UI at / with an SPA fallback, and leaves API 404/405 as JSON', async () => {
    const index = await fetch(`${s.url}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type') ?? '', /text\/html/);
    const html = await index.text();
    assert.match(html, /<div id="root">/);
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    assert.ok(asset, 'index.html references a built script');
    const js = await fetch(s.url + asset);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    await js.arrayBuffer();

    const deep = await fetch(`${s.url}/chat/thread_abc`, { headers: { accept: 'text/html' } });
    assert.equal(deep.status, 200);
    assert.equal(await deep.text(), html, 'deep links get index.html');

    const apiMissing = await api(s.url, 'GET', '/api/nope', { headers: { accept: 'text/html' } });
    assert.equal(apiMissing.status, 404);
    assert.equal(apiMissing.body.error.code, 'not_found');
    const wrongMethod = await api(s.url, 'DELETE', '/api/tasks');
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.body.error.code, 'method_not_allowed');
    const postRoot = await api(s.url, 'POST', '/');
    assert.equal(postRoot.status, 405);
    const script404 = await api(s.url, 'GET', '/missing.js');
    assert.equal(script404.status, 404, 'a non-page request for a missing file is a 404, not index.html');
  });

  it('chat: an answer streams in; Stop shows "stopping…" until the server confirms, and aborts the upstream call', async () => {
    const page = await ctx.newPage();
    await page.goto(`${s.url}/`);
    const before = upstream.requests.length;
    await send(page, 'Tell me about the sea');
    await waitForText(page, 20);
    const t1 = await assistant(page).last().locator('.text').innerText();
    const t2 = await waitForText(page, t1.length + 10);
    assert.ok(t2.startsWith(t1), 'the text grows by appending');
    assert.equal(await assistant(page).last().getAttribute('data-status'), 'streaming');
    await page.screenshot({ path: join(ARTIFACTS, 'chat-streaming.png') });

    const taskId = await assistant(page).last().getAttribute('data-task-id');
    assert.match(taskId ?? '', /^task_/);
    const req = await upstream.waitForRequests(before + 1);

    // Hold the cancel request for a moment: the UI must say "stopping…" while the server has not confirmed.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await page.route('**/api/tasks/*/cancel', async (route) => {
      await held;
      await route.continue();
    });
    await page.getByRole('button', { name: /Stop/ }).click();
    await page.locator('.badge.stopping').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Stopping…' }).isDisabled(), true);
    assert.equal((await api(s.url, 'GET', `/api/tasks/${taskId}`)).body.status, 'running', 'not confirmed yet');
    release();

    await page.locator('.msg.assistant[data-status="cancelled"]').waitFor({ timeout: 10_000 });
    await page.locator('.badge.stopped').waitFor();
    assert.equal(await page.locator('.badge.stopping').count(), 0);
    assert.equal(await page.getByRole('button', { name: /Stop/ }).count(), 0, 'no Stop button once stopped');
    await page.unroute('**/api/tasks/*/cancel');

    const task = (await api(s.url, 'GET', `/api/tasks/${taskId}`)).body;
    assert.equal(task.status, 'cancelled');
    assert.equal(task.cancel.reason, 'user');
    const shown = await assistant(page).last().locator('.text').innerText();
    assert.equal(shown.trim(), task.output_text.trim(), 'the partial answer stays, exactly as the server kept it');
    assert.ok(shown.length > 0 && shown.length < FULL_ANSWER.length);
    // The upstream request was abandoned, not read to the end.
    await eventually(async () => req.clientGoneAt !== null);
    assert.equal(req.completed, false);
    await page.screenshot({ path: join(ARTIFACTS, 'chat-stopped.png') });

    // Next question with the echo model: the stopped turn is in its context, marked as cut short.
    await page.getByRole('combobox', { name: 'Model' }).selectOption('simulated:echo');
    await send(page, 'what did I ask?');
    await page.locator('.msg.assistant[data-status="complete"]').last().waitFor({ timeout: 10_000 });
    const echo = await assistant(page).last().locator('.text').innerText();
    assert.match(echo, /\[user\] Tell me about the sea/);
    assert.ok(echo.includes(CUT_SHORT_NOTE), 'the model was told the previous answer was cut short');
    assert.match(echo, /\[user\] what did I ask\?/);
    // The stopped turn is still marked in the history.
    assert.equal(await page.locator('.msg.assistant[data-status="cancelled"] .badge.stopped').count(), 1);
    await page.screenshot({ path: join(ARTIFACTS, 'chat.png') });
    await page.close();
  });

  it('chat: typing while an answer streams interrupts it; Esc stops the new one', async () => {
    const page = await ctx.newPage();
    await page.goto(`${s.url}/chat`);
    await page.getByRole('combobox', { name: 'Model' }).selectOption('');
    await send(page, 'first question');
    await waitForText(page, 15);
    await send(page, 'second question');
    await page.locator('.msg.assistant').nth(1).waitFor();
    await eventually(async () => (await assistant(page).first().getAttribute('data-status')) === 'cancelled' || null);
    assert.match(await assistant(page).first().locator('.badge.stopped').innerText(), /interrupted/);
    await waitForText(page, 10);
    assert.equal(await assistant(page).nth(1).getAttribute('data-status'), 'streaming');
    await page.keyboard.press('Escape');
    await page
      .locator('.msg.assistant')
      .nth(1)
      .and(page.locator('[data-status="cancelled"]'))
      .waitFor({ timeout: 10_000 });
    const secondId = await assistant(page).nth(1).getAttribute('data-task-id');
    const t = (await api(s.url, 'GET', `/api/tasks/${secondId}`)).body;
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.reason, 'user');
    await page.close();
  });

  it('chat: reloading mid-stream resumes the answer without duplicating text', async () => {
    const page = await ctx.newPage();
    await page.goto(`${s.url}/chat`);
    await page.getByRole('combobox', { name: 'Model' }).selectOption('');
    await send(page, 'a long answer please');
    await waitForText(page, 40);
    const url = page.url();
    assert.match(url, /\/chat\/thread_/, 'the thread is in the URL');
    await page.reload();
    assert.equal(page.url(), url);
    // The bubble used to go blank after a reload until the replay caught up (fixed in
    // ChatView's answerText; test/web.reload.test.ts reloads 20 times). If it ever
    // stays empty, say what the page and the API showed.
    await waitForText(page, 1).catch(async (e: unknown) => {
      const thread = /\/chat\/(thread_[^/?#]+)/.exec(url)![1];
      const msgs = (await api(s.url, 'GET', `/api/threads/${thread}/messages`)).body;
      const html = await page
        .locator('main')
        .innerHTML()
        .catch(() => '(no main)');
      throw new Error(
        `no text after the reload. messages: ${JSON.stringify(msgs).slice(0, 1500)} page: ${html.slice(0, 1500)}`,
        {
          cause: e,
        },
      );
    });
    // Mid-stream after the reload: what is shown is always a prefix of the answer, never a repeat.
    const samples: string[] = [];
    for (let i = 0; i < 5; i++) {
      samples.push(await waitForText(page, 1));
      await page.waitForTimeout(150);
    }
    await page.locator('.msg.assistant[data-status="complete"]').waitFor({ timeout: 15_000 });
    const final = await assistant(page).last().locator('.text').innerText();
    assert.equal(final.trim(), FULL_ANSWER.trim(), 'the whole answer, once');
    for (const sample of samples)
      assert.ok(FULL_ANSWER.trim().startsWith(sample.trim()), `a prefix, not a repeat: ${sample}`);
    const thread = /\/chat\/(thread_[^/?#]+)/.exec(url)![1];
    const msgs = (await api(s.url, 'GET', `/api/threads/${thread}/messages`)).body.data;
    assert.equal(msgs.at(-1).content, FULL_ANSWER);
    await page.close();
  });

  it('tasks: an uploaded document is analyzed with a moving progress bar, cancelled from the list; batch cancel', async () => {
    const page = await ctx.newPage();
    await page.goto(`${s.url}/tasks`);
    const doc = Array.from({ length: 120 }, (_, i) => `Line ${i}: the quarterly numbers look fine.`).join('\n');
    await page
      .locator('#analyze-file')
      .setInputFiles({ name: 'report.txt', mimeType: 'text/plain', buffer: Buffer.from(doc) });
    await page.getByText('report.txt').waitFor();
    assert.equal(await page.getByRole('textbox', { name: 'Document' }).inputValue(), doc);
    await page.getByText('Options').click();
    await page.locator('#analyze-chunk').fill('400');
    await page.locator('#analyze-model').selectOption('simulated');
    await page.getByRole('button', { name: 'Start analysis' }).click();

    await page.waitForURL(/\/tasks\/task_/);
    const taskId = /\/tasks\/(task_[^/?#]+)/.exec(page.url())![1]!;
    const row = page.locator(`.task-row[data-task-id="${taskId}"]`);
    const bar = row.getByRole('progressbar');
    const valueOf = async (): Promise<number> => Number((await bar.getAttribute('aria-valuenow')) ?? -1);
    const first = await eventually(async () => {
      const v = await valueOf();
      return v > 0 ? v : null;
    }, 15_000);
    const later = await eventually(async () => {
      const v = await valueOf();
      return v > first ? v : null;
    }, 15_000);
    assert.ok(later > first, `progress moved ${first} → ${later}`);
    assert.match(await row.locator('.progress-message').innerText(), /chunk \d+\/\d+/);
    await page.locator('.log tr[data-type="task.progress"]').first().waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'tasks.png') });

    await row.getByRole('button', { name: /^Cancel analyze/ }).click();
    await page.locator(`.task-row[data-task-id="${taskId}"][data-status="cancelled"]`).waitFor({ timeout: 10_000 });
    await page.locator('.log tr[data-type="task.cancelled"]').waitFor();
    const t = (await api(s.url, 'GET', `/api/tasks/${taskId}`)).body;
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.reason, 'user');

    // Batch: two more analyses, stopped with one click.
    const more = [];
    for (let i = 0; i < 2; i++) {
      more.push(
        (
          await api(s.url, 'POST', '/api/tasks', {
            body: { type: 'analyze', input: { document: doc, chunk_size: 400, model: 'simulated' } },
          })
        ).body.id,
      );
    }
    await page.locator(`.task-row[data-task-id="${more[1]}"]`).waitFor();
    await page.getByRole('button', { name: 'Cancel all active' }).click();
    await page.getByRole('button', { name: 'Yes, cancel all' }).click();
    for (const id of more) {
      await page.locator(`.task-row[data-task-id="${id}"][data-status="cancelled"]`).waitFor({ timeout: 10_000 });
      assert.equal((await api(s.url, 'GET', `/api/tasks/${id}`)).body.cancel.reason, 'batch');
    }
    await page.close();
  });

  it('works at phone width', async () => {
    const phone = await browser.newContext({ width: 390, height: 800 });
    const page = await phone.newPage();
    await page.goto(`${s.url}/chat`);
    await page.getByRole('combobox', { name: 'Model' }).selectOption('simulated:echo');
    await send(page, 'hello from a phone');
    await page.locator('.msg.assistant[data-status="complete"]').waitFor({ timeout: 10_000 });
    // The thread list is behind a toggle, and nothing overflows sideways.
    assert.equal(await page.locator('aside.threads').isVisible(), false);
    await page.getByRole('button', { name: /Chats/ }).click();
    assert.equal(await page.locator('aside.threads').isVisible(), true);
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    assert.ok(overflow <= 0, `no horizontal scroll (${overflow}px)`);
    await page.getByRole('button', { name: /Chats/ }).click();
    await page.screenshot({ path: join(ARTIFACTS, 'chat-phone.png') });
    await phone.close();
  });
});

describe('web UI not built', () => {
  it('/ says how to build it', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'leash-noweb-'));
    const app = Fastify();
    try {
      registerWebUi(app, { root: empty });
      const r = await app.inject({ method: 'GET', url: '/' });
      assert.equal(r.statusCode, 200);
      assert.match(r.headers['content-type'] as string, /text\/html/);
      assert.match(r.body, /npm run build:web/);
    } finally {
      await app.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('web UI with API keys', () => {
  let s: TestServer;
  let browser: TestBrowser;
  let stack: Stack;

  before(async () => {
    ensureWebBuilt();
    stack = await startStack({
      model: 'simulated:echo?tps=0',
      apiKeys: new Map([['k-web', 'webuser']]),
      browser: true,
    });
    ({ s, browser } = stack);
  });
  after(() => stack?.close());

  it('asks for the key when the API answers 401, keeps it, and uses it', async () => {
    const ctx = await browser.newContext();
    // The page itself must load without a key; if this server's auth covers UI paths too,
    // the browser is given the key for page and asset requests only (never for /api).
    const uiPublic = (await fetch(`${s.url}/`)).status === 200;
    if (!uiPublic) {
      await ctx.route(
        (u) => !u.pathname.startsWith('/api/') && !u.pathname.startsWith('/v1/'),
        (route) => route.continue({ headers: { ...route.request().headers(), authorization: 'Bearer k-web' } }),
      );
    }
    const page = await ctx.newPage();
    await page.goto(`${s.url}/`);
    const dialog = page.getByRole('dialog', { name: 'This server needs an API key' });
    await dialog.waitFor();
    await dialog.getByLabel('API key').fill('wrong-key');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await page.getByText('The key you gave was not accepted.').waitFor();
    await dialog.getByLabel('API key').fill('k-web');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await dialog.waitFor({ state: 'detached' });
    await send(page, 'hello with a key');
    await page.locator('.msg.assistant[data-status="complete"]').waitFor({ timeout: 10_000 });
    assert.match(await assistant(page).last().innerText(), /hello with a key/);

    await page.reload();
    await page.locator('.msg.assistant[data-status="complete"]').waitFor();
    assert.equal(await page.getByRole('dialog').count(), 0, 'the key was remembered');
    await ctx.close();
  });
});
