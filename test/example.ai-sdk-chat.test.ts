// examples/ai-sdk-chat builds with its own vite.config.ts (inside the repository:
// on the repository's sources) and works in Chromium against a real leash: a new
// chat gets its thread id in the URL, an answer streams, Stop cancels it on the
// server, and after a reload the stopped answer is shown once, marked stopped.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BrowserContext } from 'playwright-core';
import { build } from 'vite';
import { routeBuiltPage } from './helpers/browser.ts';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { api, eventually, type TestServer } from './helpers/server.ts';
import { FAKE_MODEL, startStack, type Stack } from './helpers/stack.ts';

const EXAMPLE = fileURLToPath(new URL('../examples/ai-sdk-chat', import.meta.url));
const BASE = '/__example/';

describe('examples/ai-sdk-chat', () => {
  let stack: Stack;
  let upstream: FakeUpstream;
  let s: TestServer;
  let ctx: BrowserContext;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-example-aisdk-'));
    await build({
      configFile: join(EXAMPLE, 'vite.config.ts'),
      base: BASE,
      logLevel: 'error',
      build: { outDir: dir, emptyOutDir: true },
    });
    stack = await startStack({
      upstream: { behaviour: 'stream', intervalMs: 20, tokens: [' hi'] },
      allow: [FAKE_MODEL],
      browser: true,
    });
    ({ s, upstream, ctx } = stack);
    await routeBuiltPage(ctx, s.url, BASE, dir);
  });
  after(async () => {
    await stack?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('sends, streams, stops on the server, and shows the stopped answer once after a reload', async () => {
    const answer = Array.from({ length: 30 }, (_, i) => ` a${i}`);
    upstream.options = { behaviour: 'stream', intervalMs: 15, tokens: answer };
    const page = await ctx.newPage();
    await page.goto(`${s.url}${BASE}index.html`);
    await eventually(async () => /[?&]chat=thread_/.test(page.url()));
    const chat = new URL(page.url()).searchParams.get('chat')!;
    const box = page.getByRole('textbox', { name: 'Message' });
    await box.fill('hello');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByText(answer.join('').trim()).waitFor();

    const long = Array.from({ length: 400 }, (_, i) => ` b${i}`);
    upstream.options = { behaviour: 'stream', intervalMs: 20, tokens: long };
    await box.fill('a long one');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByText(' b5 ', { exact: false }).waitFor();
    await page.getByRole('button', { name: 'Stop' }).click();
    const msgs = await eventually(async () => {
      const m = (await api(s.url, 'GET', `/api/threads/${chat}/messages`)).body.data;
      return m.at(-1).status === 'cancelled' ? m : null;
    });
    const partial = msgs.at(-1).content as string;
    const task = (await api(s.url, 'GET', `/api/tasks/${msgs.at(-1).task_id}`)).body;
    assert.equal(task.status, 'cancelled');

    await page.reload();
    await page.getByText('(stopped)').waitFor();
    assert.equal(await page.getByText('(stopped)').count(), 1);
    const text = await page.locator('main').innerText();
    assert.equal(text.split(partial.trim()).length - 1, 1, 'the partial answer is shown once');
    await page.close();
  });
});
