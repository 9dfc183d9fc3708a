// The set-up the HTTP, browser and example suites share, written once: a fake
// OpenAI-compatible upstream behind the `openai:` models, a real leash server (temp
// SQLite, port 0) whose model registry points at it, and, when asked, a headless
// Chromium with a context of its own. close() undoes whatever was started, newest
// first, also when a later step of the start failed.

import type { BrowserContext } from 'playwright-core';
import { createModelRegistry } from '../../src/models/registry.ts';
import { launchBrowser, type TestBrowser } from './browser.ts';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from './fake-upstream.ts';
import { startTestServer, type TestServer, type TestServerOptions } from './server.ts';

/** The default model of a stack with an upstream: an `openai:` model the fake upstream answers. */
export const FAKE_MODEL = 'openai:fake-model';

export interface StackOptions extends TestServerOptions {
  /**
   * Start a fake upstream with these options (change `upstream.options` between calls);
   * the server's registry then serves `openai:<name>` from it. Without it, the server's
   * models are as TestServerOptions say (`model`, `models`, `allowModels`).
   */
  upstream?: FakeUpstreamOptions;
  /** With an upstream: the registry's default model (default FAKE_MODEL). */
  defaultModel?: string;
  /** With an upstream: the registry's allowlist (default: the default model and simulated*). */
  allow?: string[];
  /** With an upstream: environment for the registry, over OPENAI_BASE_URL (the upstream) and OPENAI_API_KEY. */
  env?: NodeJS.ProcessEnv;
  /** Launch Chromium and open one context (`ctx`). */
  browser?: boolean;
}

export interface Stack {
  s: TestServer;
  url: string;
  /** The fake upstream (throws when the stack was started without `upstream`). */
  readonly upstream: FakeUpstream;
  /** Chromium (throws when the stack was started without `browser`). */
  readonly browser: TestBrowser;
  /** A browser context opened at start (throws without `browser`). */
  readonly ctx: BrowserContext;
  /** Stops everything started, newest first; idempotent. */
  close(): Promise<void>;
}

const missing = (what: string, option: string): never => {
  throw new Error(`this stack has no ${what}: start it with { ${option} }`);
};

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const { upstream: upstreamOptions, defaultModel, allow, env, browser: withBrowser, ...serverOptions } = opts;
  const undo: Array<() => Promise<unknown>> = [];
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      for (const step of undo.reverse()) await step();
    })());
  try {
    let upstream: FakeUpstream | undefined;
    if (upstreamOptions !== undefined) {
      const up = await startFakeUpstream(upstreamOptions);
      undo.push(() => up.close());
      upstream = up;
      serverOptions.models = createModelRegistry({
        defaultModel: defaultModel ?? FAKE_MODEL,
        ...(allow !== undefined && { allow }),
        env: { OPENAI_BASE_URL: up.baseURL, OPENAI_API_KEY: 'test-key', ...env },
      });
    }
    const s = await startTestServer(serverOptions);
    undo.push(() => s.close());
    let browser: TestBrowser | undefined;
    let ctx: BrowserContext | undefined;
    if (withBrowser === true) {
      const b = await launchBrowser();
      undo.push(() => b.close());
      browser = b;
      ctx = await b.newContext();
    }
    return {
      s,
      url: s.url,
      get upstream() {
        return upstream ?? missing('fake upstream', 'upstream: {…}');
      },
      get browser() {
        return browser ?? missing('browser', 'browser: true');
      },
      get ctx() {
        return ctx ?? missing('browser context', 'browser: true');
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
