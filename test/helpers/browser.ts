// Debian's Chromium driven by playwright-core. Never downloads a browser: if
// /usr/bin/chromium (or LEASH_CHROMIUM) is missing, it says how to install it.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';

export const CHROMIUM_PATH = process.env.LEASH_CHROMIUM ?? '/usr/bin/chromium';

/** Flags for a headless Chromium on a machine without network or GPU. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  browser: Browser;
  /** A fresh context (own storage) per call. */
  newContext(opts?: { width?: number; height?: number }): Promise<BrowserContext>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}. The web UI tests need Debian's chromium: ` +
        `run "apt-get update && apt-get install -y chromium" (or set LEASH_CHROMIUM to a Chromium binary).`,
    );
  }
  // launch() gives Chromium a fresh temporary profile (user-data dir) of its own and removes it on close.
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
  return {
    browser,
    newContext: (o = {}) =>
      browser.newContext({ viewport: { width: o.width ?? 1280, height: o.height ?? 800 }, deviceScaleFactor: 1 }),
    close: () => browser.close(),
  };
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };

/**
 * Serves a built page (a vite `outDir`) to `ctx` at `origin + base`, so it runs on the
 * leash server's origin (same-origin requests, as when leash serves it) without leash
 * knowing of it. Other paths go to the server as usual.
 */
export async function routeBuiltPage(ctx: BrowserContext, origin: string, base: string, dir: string): Promise<void> {
  await ctx.route(`${origin}${base}**`, async (route) => {
    const path = new URL(route.request().url()).pathname.slice(base.length) || 'index.html';
    try {
      const body = await readFile(join(dir, path));
      await route.fulfill({ status: 200, body, contentType: TYPES[extname(path)] ?? 'application/octet-stream' });
    } catch {
      await route.fulfill({ status: 404, body: 'not found' });
    }
  });
}
