import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  createSimulatedModel,
  defaultSimTps,
  echoTranscript,
  parseSimulatedSpec,
  splitTokens,
} from '../src/models/simulated.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import type { ModelProvider } from '../src/models/model.ts';
import type { ChatMessage, ModelStreamPart } from '../src/models/model.ts';
import { CancelledError } from '../src/core/cancel.ts';
import { LeashError } from '../src/core/errors.ts';
import { drain } from './helpers/model-stream.ts';

const NO_ENV = {} as NodeJS.ProcessEnv;

const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

const user = (content: string): ChatMessage => ({ role: 'user', content });

describe('simulated model: lorem', () => {
  it('is deterministic: the same messages give the same tokens', async () => {
    const m = createSimulatedModel('simulated?tps=0', NO_ENV);
    const a = await drain(m, { messages: [user('what is the capital of France?')] });
    const b = await drain(createSimulatedModel('simulated:lorem?tps=0', NO_ENV), {
      messages: [user('what is the capital of France?')],
    });
    assert.deepEqual(a.deltas, b.deltas);
    assert.deepEqual(a.finish, b.finish);
  });

  it('derives the answer from the last user message', async () => {
    const m = createSimulatedModel('simulated?tps=0', NO_ENV);
    const a = await drain(m, { messages: [user('first question')] });
    const b = await drain(m, { messages: [user('second question')] });
    assert.notEqual(a.deltas.join(''), b.deltas.join(''));
    // An earlier turn or a system prompt does not change the answer; the last user message does.
    const c = await drain(m, {
      messages: [
        { role: 'system', content: 'be brief' },
        user('x'),
        { role: 'assistant', content: 'y' },
        user('first question'),
      ],
    });
    assert.equal(c.deltas.join(''), a.deltas.join(''));
  });

  it('writes ~60 word tokens by default, each a word plus a trailing space', async () => {
    const { deltas, finish } = await drain(createSimulatedModel('simulated?tps=0', NO_ENV), {
      messages: [user('hello')],
    });
    assert.equal(deltas.length, 60);
    for (const t of deltas) assert.match(t, /^[A-Za-z]+[.,]? $/);
    assert.match(deltas[0]!, /^[A-Z]/, 'starts like a sentence');
    assert.match(deltas.at(-1)!, /\. $/, 'ends like a sentence');
    assert.deepEqual(finish, { type: 'finish', finishReason: 'stop', usage: { input_tokens: 1, output_tokens: 60 } });
  });

  it('honours ?tokens= and the call maxTokens (finishReason length)', async () => {
    const m = createSimulatedModel('simulated?tps=0&tokens=7', NO_ENV);
    const full = await drain(m, { messages: [user('a b c')] });
    assert.equal(full.deltas.length, 7);
    assert.deepEqual(full.finish, {
      type: 'finish',
      finishReason: 'stop',
      usage: { input_tokens: 3, output_tokens: 7 },
    });
    const capped = await drain(m, { messages: [user('a b c')], maxTokens: 3 });
    assert.equal(capped.deltas.length, 3);
    assert.deepEqual(capped.finish, {
      type: 'finish',
      finishReason: 'length',
      usage: { input_tokens: 3, output_tokens: 3 },
    });
    const none = await drain(createSimulatedModel('simulated?tps=0&tokens=0', NO_ENV), { messages: [user('a')] });
    assert.equal(none.deltas.length, 0);
  });

  it('counts input tokens as the words of all messages', async () => {
    const { finish } = await drain(createSimulatedModel('simulated?tps=0&tokens=1', NO_ENV), {
      messages: [{ role: 'system', content: '  one two\nthree ' }, user('four'), { role: 'assistant', content: '' }],
    });
    assert.equal(finish?.type === 'finish' && finish.usage.input_tokens, 4);
  });
});

describe('simulated model: echo', () => {
  it('answers with an exact transcript, one `[role] content` line per message', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are terse.' },
      user('what is 2+2?'),
      { role: 'assistant', content: '(cancelled) partial...' },
      user('  spaced\tout  [x] '),
    ];
    const { deltas, finish } = await drain(createSimulatedModel('simulated:echo?tps=0', NO_ENV), { messages });
    assert.equal(
      deltas.join(''),
      '[system] You are terse.\n[user] what is 2+2?\n[assistant] (cancelled) partial...\n[user]   spaced\tout  [x] ',
    );
    assert.equal(deltas.length > messages.length, true, 'streams word tokens, not one blob');
    assert.equal(finish?.type === 'finish' && finish.usage.output_tokens, deltas.length);
  });

  it('splitTokens keeps every character', () => {
    for (const s of ['', 'a', ' lead', 'trail  ', 'a\n\nb  c\t', '[user] x\n[assistant] y']) {
      assert.equal(splitTokens(s).join(''), s);
      assert.equal(echoTranscript([user(s)]), `[user] ${s}`);
    }
  });
});

describe('simulated model: pacing and abort', () => {
  it('streams at roughly the requested rate', async () => {
    const m = createSimulatedModel('simulated?tps=100&tokens=20', NO_ENV);
    const t0 = performance.now();
    const { deltas } = await drain(m, { messages: [user('pace')] });
    const ms = performance.now() - t0;
    assert.equal(deltas.length, 20);
    // 20 tokens at 100/s = 200 ms; generous bounds.
    assert.ok(ms >= 180, `took ${ms} ms, too fast`);
    assert.ok(ms < 2000, `took ${ms} ms, too slow`);
  });

  it('tps=0 means no delay', async () => {
    const t0 = performance.now();
    const { deltas } = await drain(createSimulatedModel('simulated?tps=0&tokens=20000', NO_ENV), {
      messages: [user('x')],
    });
    assert.equal(deltas.length, 20000);
    assert.ok(performance.now() - t0 < 3000);
  });

  it('takes the default rate from LEASH_SIM_TPS, else 50', () => {
    assert.equal(parseSimulatedSpec('simulated', NO_ENV).tps, 50);
    assert.equal(parseSimulatedSpec('simulated', { LEASH_SIM_TPS: '7' } as NodeJS.ProcessEnv).tps, 7);
    assert.equal(parseSimulatedSpec('simulated:echo', { LEASH_SIM_TPS: '0' } as NodeJS.ProcessEnv).tps, 0);
    assert.equal(defaultSimTps({ LEASH_SIM_TPS: 'fast' } as NodeJS.ProcessEnv), 50);
    assert.equal(parseSimulatedSpec('simulated?tps=3', { LEASH_SIM_TPS: '7' } as NodeJS.ProcessEnv).tps, 3);
  });

  it('stops within a few ms of an abort, throws the reason and leaves no timer', async () => {
    const before = timeouts();
    const ac = new AbortController();
    const reason = new CancelledError('user');
    const m = createSimulatedModel('simulated?tps=20&tokens=1000', NO_ENV); // a token every 50 ms
    const got: string[] = [];
    let abortedAt = 0;
    await assert.rejects(
      (async () => {
        for await (const part of m.stream({ messages: [user('long')], abortSignal: ac.signal })) {
          if (part.type !== 'text-delta') continue;
          got.push(part.text);
          if (got.length === 3) {
            // Abort between tokens, from a timer, while the stream waits for the next token.
            setTimeout(() => {
              abortedAt = performance.now();
              ac.abort(reason);
            }, 10);
          }
        }
      })(),
      (e) => e === reason,
    );
    const latency = performance.now() - abortedAt;
    assert.equal(got.length, 3);
    assert.ok(latency < 30, `stream ended ${latency} ms after the abort`);
    assert.equal(timeouts(), before, 'no Timeout left behind');
  });

  it('throws an AbortError for a plain abort() and yields nothing for an already-aborted signal', async () => {
    const ac = new AbortController();
    ac.abort();
    const got: ModelStreamPart[] = [];
    await assert.rejects(
      (async () => {
        for await (const p of createSimulatedModel('simulated?tps=0', NO_ENV).stream({
          messages: [user('x')],
          abortSignal: ac.signal,
        }))
          got.push(p);
      })(),
      (e: Error) => e.name === 'AbortError',
    );
    assert.equal(got.length, 0);
  });

  it('stops a tps=0 stream on abort', async () => {
    const ac = new AbortController();
    let n = 0;
    await assert.rejects(
      (async () => {
        for await (const p of createSimulatedModel('simulated:echo?tps=0', NO_ENV).stream({
          messages: [user('a b c d e f g h')],
          abortSignal: ac.signal,
        })) {
          if (p.type === 'text-delta' && ++n === 2) ac.abort(new CancelledError('user'));
        }
      })(),
      CancelledError,
    );
    assert.equal(n, 2);
  });

  it('leaves no timer when the consumer stops early', async () => {
    const before = timeouts();
    for await (const p of createSimulatedModel('simulated?tps=200&tokens=100', NO_ENV).stream({
      messages: [user('x')],
    })) {
      if (p.type === 'text-delta') break;
    }
    assert.equal(timeouts(), before);
  });
});

describe('simulated spec parsing', () => {
  for (const bad of [
    'simulated:foo',
    'simulatedx',
    'simulated?tps=-1',
    'simulated?tps=abc',
    'simulated?tps=',
    'simulated?tokens=1.5',
    'simulated?speed=3',
  ]) {
    it(`rejects "${bad}" with unknown_model`, () => {
      assert.throws(
        () => parseSimulatedSpec(bad, NO_ENV),
        (e) => LeashError.is(e, 'unknown_model') && e.message.includes(bad),
      );
    });
  }
});

describe('model registry', () => {
  it('resolves simulated specs and the default', () => {
    const r = createModelRegistry({ allow: ['*'], defaultModel: 'simulated:echo?tps=0', env: NO_ENV });
    assert.equal(r.defaultModel, 'simulated:echo?tps=0');
    assert.equal(r.resolve().id, 'simulated:echo?tps=0');
    assert.equal(r.resolve('simulated').id, 'simulated');
  });

  it('answers unknown_model for unknown prefixes, listing what is known', () => {
    const r = createModelRegistry({ allow: ['*'], defaultModel: 'simulated', providers: {} });
    for (const spec of ['openai:gpt-4o', 'gpt-4o', 'nope:x', 'simulated:foo', ':x']) {
      assert.throws(
        () => r.resolve(spec),
        (e) =>
          LeashError.is(e, 'unknown_model') &&
          e.message.startsWith(`Unknown model "${spec}". Known: simulated, simulated:echo`),
      );
    }
  });

  it('keeps option errors specific', () => {
    const r = createModelRegistry({ allow: ['*'], defaultModel: 'simulated' });
    assert.throws(
      () => r.resolve('simulated?tps=-5'),
      (e) => LeashError.is(e, 'unknown_model') && /tps must be/.test(e.message),
    );
  });

  it('hands <prefix>:<name> to the provider registered under the prefix', async () => {
    const calls: [string, string][] = [];
    const fake: ModelProvider = {
      description: 'fake provider',
      resolve(name, spec) {
        calls.push([name, spec]);
        return createSimulatedModel('simulated:echo?tps=0', NO_ENV);
      },
    };
    const r = createModelRegistry({ allow: ['*'], defaultModel: 'openai:gpt-x', providers: { openai: fake } });
    r.resolve('openai:org/model:tag');
    assert.deepEqual(calls.at(-1), ['org/model:tag', 'openai:org/model:tag']);
    assert.throws(
      () => r.resolve('openai:'),
      (e) => LeashError.is(e, 'unknown_model') && e.message.includes('openai:<model>'),
    );
    assert.throws(
      () => r.resolve('ollama:llama3'),
      (e) => LeashError.is(e, 'unknown_model'),
    );
    const ids = r.list().map((m) => m.id);
    assert.deepEqual(ids, ['simulated', 'simulated:echo', 'openai:gpt-x']);
    assert.equal(r.list().at(-1)?.provider, 'openai');
  });

  it('fails at construction when the default model cannot be resolved', () => {
    assert.throws(
      () => createModelRegistry({ allow: ['*'], defaultModel: 'openai:gpt-4o', providers: {} }),
      (e) => LeashError.is(e, 'unknown_model'),
    );
    assert.throws(
      () => createModelRegistry({ allow: ['*'], defaultModel: 'nope:x', env: NO_ENV }),
      (e) => LeashError.is(e, 'unknown_model'),
    );
    assert.throws(
      () => createModelRegistry({ allow: ['*'], defaultModel: 'simulated?tps=x' }),
      (e) => LeashError.is(e, 'unknown_model'),
    );
  });

  it('lists the simulated models once when the default is one of them', () => {
    const ids = createModelRegistry({ allow: ['*'], defaultModel: 'simulated', env: NO_ENV })
      .list()
      .map((m) => m.id);
    assert.deepEqual(ids, ['simulated', 'simulated:echo']);
    const ids2 = createModelRegistry({ allow: ['*'], defaultModel: 'simulated?tps=5', env: NO_ENV })
      .list()
      .map((m) => m.id);
    assert.deepEqual(ids2, ['simulated', 'simulated:echo', 'simulated?tps=5']);
  });
});
