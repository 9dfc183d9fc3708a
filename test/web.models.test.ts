// The web UI says plainly when answers are simulated, and names the server's default
// model in the picker; with a real default model it says nothing of the kind.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, type TestBrowser } from './helpers/browser.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { ensureWebBuilt } from './helpers/web-build.ts';
import { createModelRegistry } from '../src/models/registry.ts';

describe('web UI: which model answers', () => {
  let browser: TestBrowser;
  before(async () => {
    ensureWebBuilt();
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  async function welcome(s: TestServer): Promise<{ notice: string | null; picker: string }> {
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(s.url + '/');
      await page.getByRole('combobox', { name: 'Model' }).waitFor();
      await page.waitForFunction(() => /server default \(/.test(document.body.innerText));
      const notice = page.getByRole('note');
      return {
        notice: (await notice.count()) > 0 ? await notice.innerText() : null,
        picker: await page.locator('select[aria-label="Model"] option').first().innerText(),
      };
    } finally {
      await ctx.close();
    }
  }

  it('the simulated default: a notice that answers are simulated and how to get real ones', async () => {
    const s = await startTestServer();
    try {
      const w = await welcome(s);
      assert.equal(w.picker, 'server default (simulated)');
      assert.match(w.notice ?? '', /Answers are simulated: simulated is leash's built-in model/);
      assert.match(w.notice ?? '', /LEASH_MODEL=openai:<model>/);
    } finally {
      await s.close();
    }
  });

  it('a real default model: named in the picker, no notice', async () => {
    const models = createModelRegistry({ defaultModel: 'openai:gpt-4o-mini', env: { OPENAI_API_KEY: 'x' } });
    const s = await startTestServer({ models });
    try {
      const w = await welcome(s);
      assert.equal(w.picker, 'server default (openai:gpt-4o-mini)');
      assert.equal(w.notice, null);
    } finally {
      await s.close();
    }
  });
});
