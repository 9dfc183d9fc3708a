// The AI SDK (`streamText` through @ai-sdk/openai-compatible) pointed at leash's
// /v1: a normal stream with usage, the messages reaching the model, an abort that
// cancels the leash task, and leash's errors surfacing as the SDK's APICallError.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError, generateText, streamText } from 'ai';
import { echoTranscript } from '../src/models/simulated.ts';
import { api, eventually, startTestServer, type TestServer } from './helpers/server.ts';

describe('AI SDK (openai-compatible) against /v1', () => {
  let s: TestServer;
  let leash: ReturnType<typeof createOpenAICompatible>;

  before(async () => {
    s = await startTestServer({ apiKeys: new Map([['k-alice', 'alice']]) });
    leash = createOpenAICompatible({ name: 'leash', baseURL: `${s.url}/v1`, apiKey: 'k-alice', includeUsage: true });
  });
  after(() => s.close());

  const completions = async () =>
    (await api(s.url, 'GET', '/api/tasks?type=completion', { key: 'k-alice' })).body.data as Array<{
      id: string;
      status: string;
      output_text: string;
      cancel: { reason: string } | null;
    }>;

  it('streamText completes with the text, finish reason and usage', async () => {
    const ac = new AbortController();
    const result = streamText({
      model: leash.chatModel('simulated?tps=200&tokens=15'),
      prompt: 'Tell me a short story.',
      abortSignal: ac.signal,
      maxRetries: 0,
    });
    let text = '';
    let parts = 0;
    for await (const t of result.textStream) {
      text += t;
      parts++;
    }
    assert.ok(parts >= 2, 'streamed in parts');
    assert.equal(text.trim().split(/\s+/).length, 15);
    assert.equal(await result.finishReason, 'stop');
    const usage = await result.usage;
    assert.equal(usage.outputTokens, 15);
    assert.equal(usage.inputTokens, 5);
    const mine = (await completions()).find((t) => t.output_text === text);
    assert.equal(mine?.status, 'completed');
  });

  it('system and messages reach the model as given', async () => {
    const r = await generateText({
      model: leash.chatModel('simulated:echo?tps=0'),
      system: 'Be kind.',
      messages: [
        { role: 'user', content: 'One' },
        { role: 'assistant', content: 'Two' },
        { role: 'user', content: 'Three' },
      ],
      maxRetries: 0,
    });
    assert.equal(
      r.text,
      echoTranscript([
        { role: 'system', content: 'Be kind.' },
        { role: 'user', content: 'One' },
        { role: 'assistant', content: 'Two' },
        { role: 'user', content: 'Three' },
      ]),
    );
  });

  it('aborting mid-stream cancels the leash task (reason disconnect)', async () => {
    const before = new Set((await completions()).map((t) => t.id));
    const ac = new AbortController();
    const result = streamText({
      model: leash.chatModel('simulated?tps=40&tokens=100000'),
      prompt: 'Go on and on.',
      abortSignal: ac.signal,
      maxRetries: 0,
      onError: () => {},
    });
    let n = 0;
    try {
      for await (const _ of result.textStream) if (++n === 3) ac.abort();
    } catch {
      // an abort may surface as an AbortError; either way the stream is over
    }
    assert.ok(n >= 3);
    const task = await eventually(async () => {
      const t = (await completions()).find((x) => !before.has(x.id));
      return t && ['cancelled', 'completed', 'failed'].includes(t.status) ? t : null;
    });
    assert.equal(task.status, 'cancelled');
    assert.equal(task.cancel?.reason, 'disconnect');
    assert.ok(task.output_text.length > 0);
  });

  it("leash's errors surface as APICallError with OpenAI's message", async () => {
    await assert.rejects(
      generateText({ model: leash.chatModel('no-such-model'), prompt: 'x', maxRetries: 0 }),
      (e: unknown) => {
        assert.ok(APICallError.isInstance(e), String(e));
        // Outside the server's model allowlist (the default one: simulated*).
        assert.equal(e.statusCode, 400);
        assert.match(e.message, /no-such-model.*not allowed/);
        return true;
      },
    );
  });
});
