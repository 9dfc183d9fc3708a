// The setup the OpenAI-compatible suites share: a fake upstream behind the `openai` model,
// leash with alice's and bob's keys, and the official client pointed at /v1.

import OpenAI from 'openai';
import type { FakeUpstream, FakeUpstreamOptions } from './fake-upstream.ts';
import type { TestServer } from './server.ts';
import { startStack } from './stack.ts';

export interface OpenAiSetup {
  s: TestServer;
  upstream: FakeUpstream;
  /** The official client with alice's key. */
  client: OpenAI;
  /** The official client with another key. */
  clientFor(apiKey: string): OpenAI;
  close(): Promise<void>;
}

export async function startOpenAiSetup(upstreamOpts: FakeUpstreamOptions): Promise<OpenAiSetup> {
  const stack = await startStack({
    upstream: upstreamOpts,
    defaultModel: 'simulated',
    env: { OPENAI_API_KEY: 'up-key' },
    // The suites name `openai:` models against the fake upstream, and unknown names
    // (404 model_not_found); the allowlist's own answers are in security.models.test.ts.
    allow: ['*'],
    apiKeys: new Map([
      ['k-alice', 'alice'],
      ['k-bob', 'bob'],
    ]),
    runtime: { maxRunningPerOwner: 20 },
    // Keep-alive comments interleave with the slow streams: clients must skip them.
    sseKeepaliveMs: 20,
  });
  const clientFor = (apiKey: string): OpenAI => new OpenAI({ apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0 });
  return { s: stack.s, upstream: stack.upstream, client: clientFor('k-alice'), clientFor, close: stack.close };
}
