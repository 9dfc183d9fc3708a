import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ollamaOrigin, remoteProviders } from '../src/models/providers.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import type { Model, ModelCallOptions } from '../src/models/model.ts';
import { CancelledError } from '../src/core/cancel.ts';
import { LeashError } from '../src/core/errors.ts';
import { generate } from '../src/tasks/generate.ts';
import { createFakeContext } from './helpers/fake-context.ts';
import { DEFAULT_TOKENS, startFakeUpstream, unusedPort } from './helpers/fake-upstream.ts';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import {
  startFakeAnthropic,
  type AnthropicRequest,
  type AnthropicScript,
  type FakeAnthropic,
} from './helpers/fake-anthropic.ts';
import { drain } from './helpers/model-stream.ts';

let up: FakeUpstream;
before(async () => {
  up = await startFakeUpstream();
});
after(async () => {
  await up.close();
});

const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv =>
  ({ OPENAI_BASE_URL: up.baseURL, OPENAI_API_KEY: 'sk-test', ...extra }) as NodeJS.ProcessEnv;

function openai(name = 'gpt-fake', maxRetries = 0): Model {
  return createModelRegistry({
    allow: ['*'],
    defaultModel: 'simulated',
    env: env(),
    providers: remoteProviders({ env: env(), maxRetries }),
  }).resolve(`openai:${name}`);
}

/**
 * Streams until the third delta, then aborts from a timer (while the stream waits for
 * the next upstream token); returns what was thrown, when, and the deltas seen.
 */
async function abortAfterThreeDeltas(
  model: Model,
): Promise<{ reason: CancelledError; err: unknown; abortAt: number; thrownAt: number; seen: string[] }> {
  const ac = new AbortController();
  const reason = new CancelledError('user');
  let abortAt = 0;
  const seen: string[] = [];
  let err: unknown;
  try {
    for await (const p of model.stream({ messages: msgs, abortSignal: ac.signal })) {
      if (p.type !== 'text-delta') continue;
      seen.push(p.text);
      if (seen.length === 3) {
        setTimeout(() => {
          abortAt = performance.now();
          ac.abort(reason);
        }, 5);
      }
    }
  } catch (e) {
    err = e;
  }
  return { reason, err, abortAt, thrownAt: performance.now(), seen };
}

/** Runs the stream to its end and returns what it threw (fails if it did not throw). */
async function streamError(model: Model, opts: ModelCallOptions, seen: string[] = []): Promise<unknown> {
  try {
    for await (const p of model.stream(opts)) if (p.type === 'text-delta') seen.push(p.text);
  } catch (e) {
    return e;
  }
  assert.fail('the stream did not throw');
}

const msgs = [
  { role: 'system' as const, content: 'Be brief.' },
  { role: 'user' as const, content: 'Say hello.' },
];

describe('AI SDK adapter: openai-compatible streaming', () => {
  it('streams the upstream tokens and reports the provider usage', async () => {
    up.options = { behaviour: 'stream', intervalMs: 2 };
    const n = up.requests.length;
    const { deltas, finish } = await drain(openai('gpt-fake'), { messages: msgs, maxTokens: 50 });
    assert.equal(deltas.join(''), DEFAULT_TOKENS.join(''));
    assert.deepEqual(finish, {
      type: 'finish',
      finishReason: 'stop',
      usage: { input_tokens: 7, output_tokens: DEFAULT_TOKENS.length },
    });

    const req = up.requests[n]!;
    assert.equal(req.url, '/v1/chat/completions');
    assert.equal(req.headers.authorization, 'Bearer sk-test');
    const body = req.body as { model: string; stream: boolean; messages: unknown[]; max_tokens?: number };
    assert.equal(body.model, 'gpt-fake');
    assert.equal(body.stream, true);
    assert.equal(body.max_tokens, 50);
    assert.deepEqual(body.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Say hello.' },
    ]);
  });

  it('closes the upstream socket within a few ms of an abort, mid-stream', async () => {
    up.options = { behaviour: 'stream', intervalMs: 40, tokens: Array.from({ length: 200 }, (_, i) => ` t${i}`) };
    const n = up.requests.length;
    const { reason, err, abortAt, thrownAt, seen } = await abortAfterThreeDeltas(openai());
    assert.equal(err, reason, 'the stream throws the signal reason');
    assert.ok(thrownAt - abortAt < 50, `stream ended ${thrownAt - abortAt} ms after the abort`);
    const req = up.requests[n]!;
    const closedAt = await up.waitForSocketClose(req);
    assert.ok(closedAt - abortAt < 50, `upstream socket closed ${closedAt - abortAt} ms after the abort`);
    assert.equal(req.completed, false);
    assert.ok(req.tokensWritten < 10, `upstream wrote ${req.tokensWritten} tokens`);
    assert.equal(req.tokensAfterClientGone, 0);
    assert.equal(seen.length, 3);
  });

  it('closes the upstream socket on abort while the upstream has not answered yet', async () => {
    up.options = { behaviour: 'hang' };
    const n = up.requests.length;
    const ac = new AbortController();
    const pending = streamError(openai(), { messages: msgs, abortSignal: ac.signal });
    const req = await up.waitForRequests(n + 1);
    const abortAt = performance.now();
    ac.abort(new CancelledError('deadline'));
    const err = await pending;
    assert.ok(err instanceof CancelledError && err.reason === 'deadline');
    const closedAt = await up.waitForSocketClose(req);
    assert.ok(closedAt - abortAt < 50, `upstream socket closed ${closedAt - abortAt} ms after the abort`);
  });

  it('closes the upstream socket when the consumer stops reading', async () => {
    up.options = { behaviour: 'stream', intervalMs: 30, tokens: Array.from({ length: 100 }, () => ' x') };
    const n = up.requests.length;
    for await (const p of openai().stream({ messages: msgs })) if (p.type === 'text-delta') break;
    const req = up.requests[n]!;
    await up.waitForSocketClose(req, 2000);
    assert.equal(req.completed, false);
  });

  it('does not call the upstream with an already-aborted signal', async () => {
    const n = up.requests.length;
    const ac = new AbortController();
    ac.abort(new CancelledError('user'));
    const err = await streamError(openai(), { messages: msgs, abortSignal: ac.signal });
    assert.ok(err instanceof CancelledError);
    assert.equal(up.requests.length, n);
  });
});

describe('AI SDK adapter: upstream failures', () => {
  it('answers upstream_error for an HTTP 500, with the upstream message', async () => {
    up.options = { behaviour: 'error', status: 500, errorMessage: 'the GPUs are on fire' };
    const err = await streamError(openai(), { messages: msgs });
    assert.ok(LeashError.is(err, 'upstream_error'), String(err));
    assert.match(err.message, /openai at http:\/\/127\.0\.0\.1:\d+\/v1 answered HTTP 500: the GPUs are on fire/);
    assert.deepEqual(err.details, { provider: 'openai', status: 500 });
  });

  it('answers upstream_error for a 401', async () => {
    up.options = { behaviour: 'error', status: 401, errorMessage: 'Incorrect API key provided' };
    const err = await streamError(openai(), { messages: msgs });
    assert.ok(LeashError.is(err, 'upstream_error'));
    assert.match(err.message, /HTTP 401: Incorrect API key provided/);
  });

  it('retries a 500 when asked and says how many attempts it made', async () => {
    up.options = { behaviour: 'error', status: 503, retryAfterMs: 5, errorMessage: 'overloaded' };
    const n = up.requests.length;
    const err = await streamError(openai('gpt-fake', 1), { messages: msgs });
    assert.equal(up.requests.length, n + 2);
    assert.ok(LeashError.is(err, 'upstream_error'));
    assert.match(err.message, /HTTP 503: overloaded \(gave up after 2 attempts\)/);
  });

  it('answers upstream_unreachable when nothing listens', async () => {
    const port = await unusedPort();
    const e = { OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1`, OPENAI_API_KEY: 'k' } as NodeJS.ProcessEnv;
    const model = remoteProviders({ env: e, maxRetries: 0 }).openai!.resolve('m', 'openai:m');
    const err = await streamError(model, { messages: msgs });
    assert.ok(LeashError.is(err, 'upstream_unreachable'), String(err));
    assert.match(err.message, new RegExp(`Cannot reach openai at http://127.0.0.1:${port}/v1: .*ECONNREFUSED`));
  });

  it('answers upstream_unreachable when the connection is reset before an answer', async () => {
    up.options = { behaviour: 'reset' };
    const err = await streamError(openai(), { messages: msgs });
    assert.ok(LeashError.is(err, 'upstream_unreachable'), String(err));
    assert.match(err.message, /openai at http:\/\/127\.0\.0\.1/);
  });

  it('answers upstream_unreachable when the connection drops mid-answer, after the first tokens', async () => {
    up.options = { behaviour: 'reset-mid', resetAfter: 3, intervalMs: 2 };
    const seen: string[] = [];
    const err = await streamError(openai(), { messages: msgs }, seen);
    assert.ok(LeashError.is(err, 'upstream_unreachable'), String(err));
    assert.match(err.message, /^Lost the connection to openai at /);
    assert.equal(seen.join(''), DEFAULT_TOKENS.slice(0, 3).join(''));
  });

  it('answers upstream_bad_response for malformed SSE', async () => {
    up.options = { behaviour: 'malformed' };
    const err = await streamError(openai(), { messages: msgs });
    assert.ok(LeashError.is(err, 'upstream_bad_response'), String(err));
    assert.match(err.message, /sent a response that is not a valid stream/);
  });
});

describe('AI SDK providers', () => {
  it('ollama: talks to OLLAMA_HOST/v1 without an API key', async () => {
    up.options = { behaviour: 'stream', intervalMs: 1 };
    const n = up.requests.length;
    const r = createModelRegistry({
      allow: ['*'],
      defaultModel: 'ollama:llama3.2',
      env: { OLLAMA_HOST: up.origin } as NodeJS.ProcessEnv,
    });
    const model = r.resolve();
    assert.equal(model.id, 'ollama:llama3.2');
    const { deltas } = await drain(model, { messages: msgs });
    assert.equal(deltas.join(''), DEFAULT_TOKENS.join(''));
    const req = up.requests[n]!;
    assert.equal(req.url, '/v1/chat/completions');
    assert.equal((req.body as { model: string }).model, 'llama3.2');
    assert.equal(req.headers.authorization, undefined);
  });

  it('anthropic: needs ANTHROPIC_API_KEY, and maps its HTTP errors too', async () => {
    const r = createModelRegistry({ allow: ['*'], defaultModel: 'simulated', env: {} as NodeJS.ProcessEnv });
    assert.throws(
      () => r.resolve('anthropic:claude-x'),
      (e) => LeashError.is(e, 'model_unavailable') && /ANTHROPIC_API_KEY/.test(e.message),
    );
    up.options = { behaviour: 'error', status: 529, errorMessage: 'Overloaded' };
    const n = up.requests.length;
    const model = remoteProviders({
      env: { ANTHROPIC_API_KEY: 'ak', ANTHROPIC_BASE_URL: up.baseURL } as NodeJS.ProcessEnv,
      maxRetries: 0,
    }).anthropic!.resolve('claude-x', 'anthropic:claude-x');
    const err = await streamError(model, { messages: msgs });
    assert.ok(LeashError.is(err, 'upstream_error'), String(err));
    assert.match(err.message, /anthropic at .* answered HTTP 529/);
    assert.equal(up.requests[n]!.url, '/v1/messages');
    assert.equal(up.requests[n]!.headers['x-api-key'], 'ak');
  });

  it('openai: needs a key for api.openai.com but not for a custom base URL', () => {
    const none = createModelRegistry({ allow: ['*'], defaultModel: 'simulated', env: {} as NodeJS.ProcessEnv });
    assert.throws(
      () => none.resolve('openai:gpt-4o'),
      (e) => LeashError.is(e, 'model_unavailable') && /OPENAI_API_KEY/.test(e.message),
    );
    const local = createModelRegistry({
      allow: ['*'],
      defaultModel: 'simulated',
      env: { OPENAI_BASE_URL: 'http://127.0.0.1:8000/v1' } as NodeJS.ProcessEnv,
    });
    assert.equal(local.resolve('openai:qwen').id, 'openai:qwen');
    const keyed = createModelRegistry({
      allow: ['*'],
      defaultModel: 'openai:gpt-4o',
      env: { OPENAI_API_KEY: 'k' } as NodeJS.ProcessEnv,
    });
    assert.equal(keyed.resolve().id, 'openai:gpt-4o');
    assert.equal(keyed.list().at(-1)?.description, 'OpenAI-compatible API at https://api.openai.com/v1');
  });

  it('lists the real providers in unknown_model errors', () => {
    const r = createModelRegistry({ allow: ['*'], defaultModel: 'simulated', env: {} as NodeJS.ProcessEnv });
    assert.throws(
      () => r.resolve('gemini:pro'),
      (e) =>
        LeashError.is(e, 'unknown_model') &&
        e.message ===
          'Unknown model "gemini:pro". Known: simulated, simulated:echo, openai:<model>, ollama:<model>, anthropic:<model>, gguf:<model>',
    );
  });

  it('normalizes OLLAMA_HOST the way Ollama reads it', () => {
    assert.equal(ollamaOrigin(undefined), 'http://127.0.0.1:11434');
    assert.equal(ollamaOrigin(''), 'http://127.0.0.1:11434');
    assert.equal(ollamaOrigin('0.0.0.0'), 'http://127.0.0.1:11434');
    assert.equal(ollamaOrigin('gpu-box:1234'), 'http://gpu-box:1234');
    assert.equal(ollamaOrigin('https://ollama.example.com/'), 'https://ollama.example.com');
    assert.equal(ollamaOrigin('http://10.0.0.2:11434/'), 'http://10.0.0.2:11434');
  });
});

describe('generate task over a real provider', () => {
  it('a cancel reaches the upstream socket and no delta arrives after it', async () => {
    up.options = { behaviour: 'stream', intervalMs: 30, tokens: Array.from({ length: 200 }, (_, i) => ` w${i}`) };
    const n = up.requests.length;
    const models = createModelRegistry({
      allow: ['*'],
      defaultModel: 'openai:gpt-fake',
      env: env(),
      providers: remoteProviders({ env: env(), maxRetries: 0 }),
    });
    let cancelAt = 0;
    const f = createFakeContext({
      models,
      onEmit: (_t, k) => {
        if (k === 2) {
          cancelAt = performance.now();
          f.cancel('user');
        }
      },
    });
    await assert.rejects(generate.run({ prompt: 'go on forever' }, f.ctx), (e) => e instanceof CancelledError);
    const req = up.requests[n]!;
    const closedAt = await up.waitForSocketClose(req);
    assert.ok(closedAt - cancelAt < 50, `upstream socket closed ${closedAt - cancelAt} ms after the cancel`);
    assert.equal(f.emitted.length, 2);
    assert.equal(req.completed, false);
  });
});

describe('OpenAI-compatible stream: answers that are not what they should be', () => {
  // A server of our own, answering each request with `reply`.
  let reply: (res: ServerResponse) => void = () => {};
  let base = '';
  let server: Server;
  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => reply(res));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  const model = (): Model =>
    remoteProviders({ env: { OPENAI_BASE_URL: base } as NodeJS.ProcessEnv, maxRetries: 0 }).openai!.resolve(
      'm',
      'openai:m',
    );
  const sse = (res: ServerResponse, ...events: string[]): void => {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    res.end(events.map((e) => `data: ${e}\n\n`).join(''));
  };
  const chunk = (content: string): string => JSON.stringify({ choices: [{ index: 0, delta: { content } }] });

  it('an error event mid-stream is upstream_error with its message, after the text before it', async () => {
    reply = (res) => sse(res, chunk('Hel'), chunk('lo'), JSON.stringify({ error: { message: 'the model crashed' } }));
    const seen: string[] = [];
    const err = await streamError(model(), { messages: msgs }, seen);
    assert.ok(LeashError.is(err, 'upstream_error'), String(err));
    assert.match(err.message, /openai at http:\/\/127\.0\.0\.1:\d+\/v1 failed mid-answer: the model crashed/);
    assert.equal(seen.join(''), 'Hello');
  });

  it('a 200 that is not an event stream (a web page) is upstream_bad_response, not an empty answer', async () => {
    reply = (res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>hello</html>');
    };
    const err = await streamError(model(), { messages: msgs });
    assert.ok(LeashError.is(err, 'upstream_bad_response'), String(err));
    assert.match(err.message, /expected an event stream, got text\/html \(HTTP 200\)/);
  });

  it('an event stream without a single chunk is upstream_bad_response', async () => {
    reply = (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(': keepalive\n\n');
    };
    const err = await streamError(model(), { messages: msgs });
    assert.ok(LeashError.is(err, 'upstream_bad_response'), String(err));
    assert.match(err.message, /no chat completion chunk in the answer/);
  });

  it('a complete stream without [DONE] is still an answer; usage falls back to counted tokens', async () => {
    reply = (res) =>
      sse(res, chunk('a'), chunk('b'), JSON.stringify({ choices: [{ delta: {}, finish_reason: 'length' }] }));
    const { deltas, finish } = await drain(model(), { messages: msgs });
    assert.equal(deltas.join(''), 'ab');
    assert.deepEqual(finish, { type: 'finish', finishReason: 'length', usage: { input_tokens: 0, output_tokens: 2 } });
  });
});

describe('anthropic: against a fake Anthropic Messages API', () => {
  const idle: AnthropicScript = { tokens: [], intervalMs: 1, inputTokens: 0, outputTokens: 0, stopReason: 'end_turn' };
  let fake: FakeAnthropic;
  let base = '';
  let seen: AnthropicRequest[] = [];
  before(async () => {
    fake = await startFakeAnthropic(idle);
    base = fake.base;
    seen = fake.seen;
  });
  after(() => fake.close());

  const claude = (): Model =>
    remoteProviders({
      env: { ANTHROPIC_API_KEY: 'ak-test', ANTHROPIC_BASE_URL: base } as NodeJS.ProcessEnv,
      maxRetries: 0,
    }).anthropic!.resolve('claude-fake', 'anthropic:claude-fake');

  it("streams the tokens and reports Anthropic's usage and stop reason", async () => {
    const tokens = ['Hel', 'lo', ' from', ' the', ' fake', ' Claude', '.'];
    fake.script = { tokens, intervalMs: 2, inputTokens: 23, outputTokens: 11, stopReason: 'end_turn' };
    const n = seen.length;
    const { deltas, finish } = await drain(claude(), { messages: msgs, maxTokens: 50 });
    assert.equal(deltas.join(''), tokens.join(''));
    assert.deepEqual(finish, {
      type: 'finish',
      finishReason: 'stop',
      usage: { input_tokens: 23, output_tokens: 11 },
    });

    const req = seen[n]!;
    assert.equal(req.url, '/v1/messages');
    assert.equal(req.headers['x-api-key'], 'ak-test');
    assert.equal(req.headers.authorization, undefined);
    assert.ok(req.headers['anthropic-version'], 'sends an anthropic-version header');
    const body = req.body as { model: string; stream: boolean; max_tokens: number; system: unknown; messages: unknown };
    assert.equal(body.model, 'claude-fake');
    assert.equal(body.stream, true);
    assert.equal(body.max_tokens, 50);
    // Anthropic has no system role: the system message goes to the top-level `system` field.
    assert.deepEqual(body.system, [{ type: 'text', text: 'Be brief.' }]);
    assert.deepEqual(body.messages, [{ role: 'user', content: [{ type: 'text', text: 'Say hello.' }] }]);

    fake.script = { tokens: ['a', 'b'], intervalMs: 1, inputTokens: 5, outputTokens: 2, stopReason: 'max_tokens' };
    const cut = await drain(claude(), { messages: msgs, maxTokens: 2 });
    assert.equal(cut.deltas.join(''), 'ab');
    assert.deepEqual(cut.finish, {
      type: 'finish',
      finishReason: 'length',
      usage: { input_tokens: 5, output_tokens: 2 },
    });
  });

  it('closes the upstream socket within a few ms of an abort, mid-stream', async () => {
    const tokens = Array.from({ length: 200 }, (_, i) => ` c${i}`);
    fake.script = { tokens, intervalMs: 40, inputTokens: 3, outputTokens: 200, stopReason: 'end_turn' };
    const n = seen.length;
    const { reason, err, abortAt, thrownAt, seen: got } = await abortAfterThreeDeltas(claude());
    assert.equal(err, reason, 'the stream throws the signal reason');
    assert.ok(thrownAt - abortAt < 50, `stream ended ${thrownAt - abortAt} ms after the abort`);
    const req = seen[n]!;
    const closedAt = await req.socketClosed;
    assert.ok(closedAt - abortAt < 50, `upstream socket closed ${closedAt - abortAt} ms after the abort`);
    assert.equal(req.completed, false);
    assert.ok(req.deltasWritten < 10, `upstream wrote ${req.deltasWritten} deltas`);
    assert.deepEqual(got, tokens.slice(0, 3));
  });

  it('an error event mid-stream is an upstream_* LeashError with its message, after the text before it', async () => {
    fake.script = {
      tokens: ['Hel', 'lo', ' never'],
      intervalMs: 2,
      inputTokens: 3,
      outputTokens: 3,
      stopReason: 'end_turn',
      errorAfter: 2,
    };
    const got: string[] = [];
    const err = await streamError(claude(), { messages: msgs }, got);
    assert.ok(err instanceof LeashError && err.code.startsWith('upstream_'), String(err));
    assert.match(err.message, /^anthropic at http:\/\/127\.0\.0\.1:\d+\/v1 failed: Overloaded \(overloaded_error\)$/);
    assert.equal(got.join(''), 'Hello');
  });
});
