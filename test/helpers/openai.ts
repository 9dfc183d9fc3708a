// The setup the OpenAI-compatible suites share: a fake upstream behind the `openai` model,
// leash with alice's and bob's keys, and the official client pointed at /v1.

import OpenAI from 'openai';
import { createModelRegistry } from '../../src/models/registry.ts';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from './fake-upstream.ts';
import { startTestServer, type TestServer } from './server.ts';

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
  const upstream = await startFakeUpstream(upstreamOpts);
  const models = createModelRegistry({
    defaultModel: 'simulated',
    env: { OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: 'up-key' },
    // The suites name `openai:` models against the fake upstream, and unknown names
    // (404 model_not_found); the allowlist's own answers are in security.models.test.ts.
    allow: ['*'],
  });
  const s = await startTestServer({
    models,
    apiKeys: new Map([
      ['k-alice', 'alice'],
      ['k-bob', 'bob'],
    ]),
    runtime: { maxRunningPerOwner: 20 },
    // Keep-alive comments interleave with the slow streams: clients must skip them.
    sseKeepaliveMs: 20,
  });
  const clientFor = (apiKey: string): OpenAI => new OpenAI({ apiKey, baseURL: `${s.url}/v1`, maxRetries: 0 });
  return {
    s,
    upstream,
    client: clientFor('k-alice'),
    clientFor,
    async close() {
      await s.close();
      await upstream.close();
    },
  };
}
