// Every model provider through the one conformance suite (test/models.conformance.ts):
// the built-in simulated model, OpenAI-compatible and Ollama (fake OpenAI-compatible
// upstream), Anthropic (fake Messages API). gguf runs in test/models.gguf.test.ts on a
// generated tiny model.

import { createModelRegistry } from '../src/models/registry.ts';
import { remoteProviders } from '../src/models/providers.ts';
import { createSimulatedModel } from '../src/models/simulated.ts';
import { startFakeUpstream } from './helpers/fake-upstream.ts';
import { startFakeAnthropic } from './helpers/fake-anthropic.ts';
import { modelConformance } from './models.conformance.ts';

const tokens = (n: number): string[] => Array.from({ length: n }, (_, i) => ` t${i}`);

modelConformance('simulated', async () => ({
  streaming: (count, intervalMs) => ({
    model: createSimulatedModel(`simulated?tps=${Math.round(1000 / intervalMs)}&tokens=${count}`, {}),
  }),
  calls: () => 0,
  lastCallClosed: () => null,
  close: async () => {},
}));

for (const provider of ['openai', 'ollama'] as const) {
  modelConformance(provider, async () => {
    const up = await startFakeUpstream();
    const env: NodeJS.ProcessEnv = { OPENAI_BASE_URL: up.baseURL, OPENAI_API_KEY: 'sk-test', OLLAMA_HOST: up.origin };
    const model = () =>
      createModelRegistry({
        allow: ['*'],
        defaultModel: 'simulated',
        env,
        providers: remoteProviders({ env, maxRetries: 0 }),
      }).resolve(`${provider}:fake-model`);
    return {
      streaming: (count, intervalMs) => {
        up.options = { behaviour: 'stream', tokens: tokens(count), intervalMs };
        return { model: model(), text: tokens(count).join('') };
      },
      failing: () => {
        up.options = { behaviour: 'error', status: 500 };
        return model();
      },
      calls: () => up.requests.length,
      lastCallClosed: () => {
        const req = up.requests.at(-1);
        return req === undefined ? null : up.waitForSocketClose(req, 2_000);
      },
      close: () => up.close(),
    };
  });
}

modelConformance('anthropic', async () => {
  const fake = await startFakeAnthropic({
    tokens: [],
    intervalMs: 1,
    inputTokens: 0,
    outputTokens: 0,
    stopReason: 'end_turn',
  });
  const model = () =>
    remoteProviders({
      env: { ANTHROPIC_API_KEY: 'ak-test', ANTHROPIC_BASE_URL: fake.base },
      maxRetries: 0,
    }).anthropic!.resolve('claude-fake', 'anthropic:claude-fake');
  return {
    streaming: (count, intervalMs) => {
      fake.script = { tokens: tokens(count), intervalMs, inputTokens: 7, outputTokens: count, stopReason: 'end_turn' };
      return { model: model(), text: tokens(count).join('') };
    },
    failing: () => {
      fake.script = {
        tokens: ['a'],
        intervalMs: 1,
        inputTokens: 1,
        outputTokens: 1,
        stopReason: 'end_turn',
        errorAfter: 1,
      };
      return model();
    },
    calls: () => fake.seen.length,
    lastCallClosed: () => fake.seen.at(-1)?.socketClosed ?? null,
    close: () => fake.close(),
  };
});
