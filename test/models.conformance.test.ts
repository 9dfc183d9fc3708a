// Every model provider through the one conformance suite (test/models.conformance.ts):
// the built-in simulated model, OpenAI-compatible and Ollama (fake OpenAI-compatible
// upstream), Anthropic (fake Messages API), gguf (node-llama-cpp on a generated tiny
// model, test/helpers/tiny-gguf.ts).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Model } from '../src/models/model.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import { remoteProviders } from '../src/models/providers.ts';
import { countWords, createSimulatedModel, loremTokens } from '../src/models/simulated.ts';
import { ggufProvider } from '../src/models/gguf/provider.ts';
import { GGUF_DEFAULT_LIMITS } from '../src/models/gguf/spec.ts';
import { unloadGgufModels } from '../src/models/gguf/loaded-models.ts';
import { startFakeUpstream, unusedPort } from './helpers/fake-upstream.ts';
import { startFakeAnthropic, type AnthropicScript } from './helpers/fake-anthropic.ts';
import { writeTinyGguf } from './helpers/tiny-gguf.ts';
import { CONFORMANCE_MESSAGES, modelConformance } from './models.conformance.ts';

const tokens = (n: number): string[] => Array.from({ length: n }, (_, i) => ` t${i}`);

modelConformance('simulated', async () => ({
  streaming: (count, intervalMs) => ({
    model: createSimulatedModel(`simulated?tps=${Math.round(1000 / intervalMs)}&tokens=${count}`, {}),
    text: loremTokens(CONFORMANCE_MESSAGES, count).join(''),
    usage: { input_tokens: countWords(CONFORMANCE_MESSAGES), output_tokens: count },
  }),
  failures: {},
  calls: () => 0,
  lastCallClosed: () => null,
  close: async () => {},
}));

for (const provider of ['openai', 'ollama'] as const) {
  modelConformance(provider, async () => {
    const up = await startFakeUpstream();
    const nowhere = `127.0.0.1:${await unusedPort()}`;
    const model = (at = up.origin) => {
      const env: NodeJS.ProcessEnv = { OPENAI_BASE_URL: `${at}/v1`, OPENAI_API_KEY: 'sk-test', OLLAMA_HOST: at };
      return createModelRegistry({
        allow: ['*'],
        defaultModel: 'simulated',
        env,
        providers: remoteProviders({ env, maxRetries: 0 }),
      }).resolve(`${provider}:fake-model`);
    };
    const behaving = (options: typeof up.options) => (): Model => {
      up.options = options;
      return model();
    };
    return {
      streaming: (count, intervalMs) => {
        const usage = { prompt_tokens: 7, completion_tokens: count };
        up.options = { behaviour: 'stream', tokens: tokens(count), intervalMs, usage };
        return { model: model(), text: tokens(count).join(''), usage: { input_tokens: 7, output_tokens: count } };
      },
      silent: behaving({ behaviour: 'hang' }),
      failures: {
        http_error: behaving({ behaviour: 'error', status: 500 }),
        unreachable: () => model(`http://${nowhere}`),
        cut_off: behaving({ behaviour: 'reset-mid', tokens: tokens(5), resetAfter: 2, intervalMs: 1 }),
        bad_stream: behaving({ behaviour: 'malformed' }),
        error_event: behaving({ behaviour: 'error-mid', tokens: tokens(5), resetAfter: 2, intervalMs: 1 }),
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
  const script = (more: Partial<AnthropicScript>): AnthropicScript => ({
    tokens: ['a', 'b', 'c'],
    intervalMs: 1,
    inputTokens: 1,
    outputTokens: 3,
    stopReason: 'end_turn',
    ...more,
  });
  const fake = await startFakeAnthropic(script({}));
  const nowhere = `http://127.0.0.1:${await unusedPort()}/v1`;
  const model = (base = fake.base) =>
    remoteProviders({
      env: { ANTHROPIC_API_KEY: 'ak-test', ANTHROPIC_BASE_URL: base },
      maxRetries: 0,
    }).anthropic!.resolve('claude-fake', 'anthropic:claude-fake');
  const scripted = (more: Partial<AnthropicScript>) => (): Model => {
    fake.script = script(more);
    return model();
  };
  return {
    streaming: (count, intervalMs) => {
      fake.script = script({ tokens: tokens(count), intervalMs, inputTokens: 7, outputTokens: count });
      return { model: model(), text: tokens(count).join(''), usage: { input_tokens: 7, output_tokens: count } };
    },
    silent: scripted({ hang: true }),
    failures: {
      http_error: scripted({ status: 500 }),
      unreachable: () => model(nowhere),
      cut_off: scripted({ resetAfter: 2 }),
      bad_stream: scripted({ malformed: true }),
      error_event: scripted({ errorAfter: 1 }),
    },
    calls: () => fake.seen.length,
    lastCallClosed: () => fake.seen.at(-1)?.socketClosed ?? null,
    close: () => fake.close(),
  };
});

modelConformance('gguf', async () => {
  const tiny = writeTinyGguf({ seed: 1 });
  // A file with the GGUF magic and nothing loadable after it.
  writeFileSync(join(tiny.dir, 'corrupt.gguf'), Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(4096, 7)]));
  const provider = ggufProvider({
    env: {},
    limits: { ...GGUF_DEFAULT_LIMITS, modelsDir: tiny.dir },
    logger: { warn: () => {} },
  });
  // One thread and greedy sampling: fast and repeatable on a small machine.
  const resolve = (file: string): Model => provider.resolve(`${file}?threads=1&temp=0`, `gguf:${file}`);
  return {
    // In-process: no pacing; `count` is the answer's length, so it ends by length.
    streaming: (count) => {
      const inner = resolve('tiny.gguf');
      const model: Model = { id: inner.id, stream: (call) => inner.stream({ ...call, maxTokens: count }) };
      return { model, finishReason: 'length' };
    },
    failures: { unloadable: () => resolve('corrupt.gguf') },
    calls: () => 0,
    lastCallClosed: () => null,
    close: async () => {
      await unloadGgufModels();
      tiny.cleanup();
    },
  };
});
