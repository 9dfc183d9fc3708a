// The `gguf:` provider, for real: node-llama-cpp's prebuilt llama.cpp runs a tiny
// random-weight model that the tests write themselves (test/helpers/tiny-gguf.ts).
// Its text is gibberish, so the tests check counts, types, determinism and the stop path.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tinyByteToken, tinyGguf, writeTinyGguf } from './helpers/tiny-gguf.ts';
import {
  AnswerFilter,
  StreamDetokenizer,
  buildPrompt,
  createGgufModel,
  ggufProvider,
  ggufStats,
  loadGgufModel,
  parseGgufSpec,
  transcriptPrompt,
  unloadGgufModels,
} from '../src/models/gguf.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import type { Token } from 'node-llama-cpp';
import type { Model, ModelCallOptions, ModelStreamPart } from '../src/models/model.ts';
import { CancelledError } from '../src/runtime/cancel.ts';
import { LeashError } from '../src/runtime/errors.ts';

const NO_ENV = {} as NodeJS.ProcessEnv;
const user = (content: string) => ({ role: 'user' as const, content });

let tiny: ReturnType<typeof writeTinyGguf>;
const file = (name: string): string => join(tiny.dir, name);

before(() => {
  tiny = writeTinyGguf({ seed: 1 });
});

after(async () => {
  await unloadGgufModels();
  tiny.cleanup();
});

/** A model on the tiny file; one thread keeps it fast and repeatable on small machines. */
const gguf = (query = 'temp=0', path = tiny.path): Model =>
  ggufProvider({ env: NO_ENV }).resolve(`${path}?threads=1&${query}`, `gguf:${path}?threads=1&${query}`);

async function drain(model: Model, opts: ModelCallOptions): Promise<{ deltas: string[]; parts: ModelStreamPart[] }> {
  const parts: ModelStreamPart[] = [];
  for await (const part of model.stream(opts)) parts.push(part);
  const deltas = parts.flatMap((p) => (p.type === 'text-delta' ? [p.text] : []));
  return { deltas, parts };
}

const finishOf = (parts: ModelStreamPart[]): Extract<ModelStreamPart, { type: 'finish' }> => {
  const last = parts.at(-1);
  assert.ok(last && last.type === 'finish', 'the stream ends with a finish part');
  assert.equal(parts.filter((p) => p.type === 'finish').length, 1);
  return last;
};

/** Resolves when `f` throws; returns the error. */
async function rejection(f: () => Promise<unknown>): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('gguf: spec parsing and registry', () => {
  it('resolves relative paths and parses options', () => {
    const s = parseGgufSpec('models/a.gguf?threads=2&ctx=512&temp=0.5&seed=9', 'gguf:…', '/srv/leash');
    assert.equal(s.path, '/srv/leash/models/a.gguf');
    assert.deepEqual(s.options, { threads: 2, ctx: 512, temp: 0.5, seed: 9 });
    assert.equal(parseGgufSpec('/abs/b.gguf', 'gguf:/abs/b.gguf', '/srv').path, '/abs/b.gguf');
    assert.deepEqual(parseGgufSpec('/abs/b.gguf', 'gguf:/abs/b.gguf').options, {});
  });

  it('rejects bad options as unknown_model', () => {
    for (const name of ['a.gguf?temp=hot', 'a.gguf?ctx=1.5', 'a.gguf?threads=-1', 'a.gguf?top=3', '?ctx=512', '']) {
      const e = (() => {
        try {
          parseGgufSpec(name, `gguf:${name}`);
        } catch (err) {
          return err;
        }
      })();
      assert.ok(LeashError.is(e, 'unknown_model'), `"${name}" → ${String(e)}`);
    }
  });

  it('is a default provider of the registry; a missing file is model_unavailable', () => {
    const registry = createModelRegistry({ defaultModel: 'simulated', env: NO_ENV });
    assert.equal(registry.resolve(`gguf:${tiny.path}`).id, `gguf:${tiny.path}`);

    const missing = file('nope.gguf');
    assert.throws(
      () => registry.resolve(`gguf:${missing}?temp=0`),
      (e: unknown) => LeashError.is(e, 'model_unavailable') && e.message === `GGUF model not found: ${missing}`,
    );
    // A relative path is reported as the absolute path it was looked for at.
    assert.throws(
      () => registry.resolve('gguf:no/such/model.gguf'),
      (e: unknown) => LeashError.is(e, 'model_unavailable') && e.message.endsWith(resolve('no/such/model.gguf')),
    );
    // A directory is not a model file.
    assert.throws(
      () => registry.resolve(`gguf:${tiny.dir}`),
      (e: unknown) => LeashError.is(e, 'model_unavailable'),
    );
    // An unusable default model fails at startup.
    assert.throws(
      () => createModelRegistry({ defaultModel: `gguf:${missing}`, env: NO_ENV }),
      (e: unknown) => LeashError.is(e, 'model_unavailable'),
    );
  });
});

describe('gguf: generation', () => {
  it('loads the model and streams text deltas, then a finish with usage', async () => {
    const { deltas, parts } = await drain(gguf(), { messages: [user('hello world')], maxTokens: 12 });
    const finish = finishOf(parts);
    assert.ok(deltas.length >= 1, 'at least one delta');
    for (const d of deltas) assert.ok(typeof d === 'string' && d.length > 0);
    assert.ok(finish.usage.input_tokens > 3, `input tokens ${finish.usage.input_tokens}`);
    assert.ok(finish.usage.output_tokens >= 1 && finish.usage.output_tokens <= 12);
    assert.ok(finish.finishReason === 'length' || finish.finishReason === 'stop');
    if (finish.finishReason === 'length') assert.equal(finish.usage.output_tokens, 12);
  });

  it('is deterministic: temp 0 twice, and the same seed twice, give the same output', async () => {
    const call = { messages: [user('the cat is a dog')], maxTokens: 16 };
    const a = await drain(gguf('temp=0'), call);
    const b = await drain(gguf('temp=0'), call);
    assert.deepEqual(a.parts, b.parts);

    const s1 = await drain(gguf('temp=0.9&seed=7'), call);
    const s2 = await drain(gguf('temp=0.9&seed=7'), call);
    const s3 = await drain(gguf('temp=0.9&seed=8'), call);
    assert.deepEqual(s1.parts, s2.parts);
    assert.notEqual(s1.deltas.join(''), s3.deltas.join(''), 'another seed samples other tokens');
    // The call's temperature overrides the spec's.
    const greedy = await drain(gguf('temp=0.9&seed=8'), { ...call, temperature: 0 });
    assert.deepEqual(greedy.parts, a.parts);
  });

  it('counts the prompt as input tokens and honours maxTokens', async () => {
    const short = finishOf((await drain(gguf(), { messages: [user('hi')], maxTokens: 5 })).parts);
    const long = finishOf(
      (
        await drain(gguf(), {
          messages: [{ role: 'system', content: 'be brief' }, user('hi hello world')],
          maxTokens: 5,
        })
      ).parts,
    );
    assert.ok(long.usage.input_tokens > short.usage.input_tokens);
    assert.equal(short.usage.output_tokens, 5);
    assert.equal(short.finishReason, 'length');

    const none = await drain(gguf(), { messages: [user('hi')], maxTokens: 0 });
    assert.deepEqual(none.deltas, []);
    assert.equal(finishOf(none.parts).finishReason, 'length');
    assert.equal(finishOf(none.parts).usage.output_tokens, 0);
  });

  it('stops at the end of the context, and refuses a prompt longer than the context', async () => {
    // The tiny model's context is 256 tokens; about 210 go to the prompt (~4 tokens a word).
    const words = Array.from({ length: 50 }, (_, i) => (i % 2 ? 'cat' : 'dog')).join(' ');
    const { parts } = await drain(gguf(), { messages: [user(words)] });
    const finish = finishOf(parts);
    assert.ok(finish.usage.input_tokens > 150 && finish.usage.input_tokens < 256, `${finish.usage.input_tokens}`);
    assert.equal(finish.finishReason, 'length');
    assert.equal(finish.usage.input_tokens + finish.usage.output_tokens, 256);

    const e = await rejection(() => drain(gguf(), { messages: [user(`${words} ${words}`)] }));
    assert.ok(LeashError.is(e) && /256/.test(e.message), String(e));
    assert.ok(LeashError.is(e, 'invalid_request'), String(e));
  });

  it('shares one load between concurrent first calls', async () => {
    const copy = file('copy.gguf');
    copyFileSync(tiny.path, copy);
    const before = ggufStats().loads;
    const results = await Promise.all(
      [1, 2, 3].map(() => drain(gguf('temp=0', copy), { messages: [user('hello')], maxTokens: 4 })),
    );
    assert.equal(ggufStats().loads - before, 1);
    assert.deepEqual(results[1]!.parts, results[0]!.parts);
    assert.deepEqual(results[2]!.parts, results[0]!.parts);
    // Cached: a later call does not load again.
    await drain(gguf('temp=0', copy), { messages: [user('again')], maxTokens: 2 });
    assert.equal(ggufStats().loads - before, 1);
    assert.equal(ggufStats().activeCalls, 0);
  });

  it('formats with the chat template when the file has one, else a role: content transcript', async () => {
    const nlc = await import('node-llama-cpp');
    const templated = join(tiny.dir, 'templated.gguf');
    writeFileSync(
      templated,
      tinyGguf({
        seed: 1,
        chatTemplate:
          '{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}' +
          '{% if add_generation_prompt %}<assistant>{% endif %}',
      }),
    );
    const messages = [{ role: 'system' as const, content: 'be brief' }, user('hello world')];

    const plain = await loadGgufModel(tiny.path, NO_ENV);
    const p = buildPrompt(nlc, plain, messages);
    assert.equal(p.format, 'transcript');
    assert.equal(transcriptPrompt(messages), 'system: be brief\nuser: hello world\nassistant:');
    assert.equal(p.tokens[0], plain.tokens.bos);
    assert.equal(plain.detokenize(p.tokens.slice(1)), transcriptPrompt(messages));

    const withTemplate = await loadGgufModel(templated, NO_ENV);
    const t = buildPrompt(nlc, withTemplate, messages);
    assert.notEqual(t.format, 'transcript');
    assert.equal(t.tokens[0], withTemplate.tokens.bos, 'the template puts the BOS token first');
    const text = withTemplate.detokenize(t.tokens.slice(1));
    // (node-llama-cpp tokenizes the template's own text apart, with SentencePiece's leading space.)
    assert.match(text, /<system>be brief ?\n<user>hello world ?\n<assistant>$/);

    const { parts } = await drain(createGgufModel('t', parseGgufSpec(`${templated}?threads=1&temp=0`, 't')), {
      messages,
      maxTokens: 6,
    });
    assert.ok(finishOf(parts).usage.output_tokens >= 1);
  });
});

describe('gguf: answer text', () => {
  it('cuts the answer at the first stop text, holding back what may start one', () => {
    const f = new AnswerFilter(['\nuser:', '\nsystem:']);
    assert.deepEqual(f.push('  Hello'), { text: 'Hello', stop: false }, 'leading whitespace is dropped');
    assert.deepEqual(f.push(' there\nus'), { text: ' there', stop: false }, '"\\nus" may start "\\nuser:"');
    assert.deepEqual(f.push('ed to'), { text: '\nused to', stop: false }, 'it did not');
    assert.deepEqual(f.push('.\nuser: next'), { text: '.', stop: true });

    const g = new AnswerFilter(['\nuser:']);
    assert.deepEqual(g.push('a\nuse'), { text: 'a', stop: false });
    assert.equal(g.flush(), '\nuse', 'held text is sent when the answer ends');
    assert.deepEqual(new AnswerFilter([]).push(' x\n'), { text: 'x\n', stop: false });
    assert.deepEqual(new AnswerFilter(['\n']).push('\n\nhi\nthere'), { text: 'hi', stop: true });
  });

  it('decodes a character split over byte tokens once it is complete', async () => {
    const model = await loadGgufModel(tiny.path, NO_ENV);
    const byte = (b: number): Token => tinyByteToken(b) as Token;
    assert.equal(model.detokenize([byte(0x41)]), 'A');
    const d = new StreamDetokenizer(model, []);
    // € is E2 82 AC.
    assert.deepEqual([d.push(byte(0xe2)), d.push(byte(0x82)), d.push(byte(0xac))], ['', '', '€']);
    assert.equal(d.push(byte(0x41)), 'A');
    assert.equal(d.push(byte(0xe2)), '');
    assert.equal(d.flush(), '\uFFFD', 'an unfinished character is flushed as it is');
    assert.equal(d.flush(), '');
    // Invalid bytes do not stall the stream for more than a few tokens.
    const e = new StreamDetokenizer(model, []);
    const outs = [0xff, 0xff, 0xff, 0xff].map((b) => e.push(byte(b)));
    assert.ok(outs.at(-1)!.length > 0, JSON.stringify(outs));
  });
});

describe('gguf: cancel', () => {
  it('stops between tokens when aborted after the 3rd delta: no more deltas, the reason is thrown', async () => {
    const ac = new AbortController();
    const reason = new CancelledError('user');
    const deltas: string[] = [];
    const before = ggufStats().generatedTokens;
    const e = await rejection(async () => {
      for await (const part of gguf().stream({ messages: [user('go on')], abortSignal: ac.signal })) {
        assert.equal(part.type, 'text-delta', 'no finish part after an abort');
        if (part.type === 'text-delta') deltas.push(part.text);
        if (deltas.length === 3) ac.abort(reason);
      }
    });
    assert.equal(e, reason);
    assert.equal(deltas.length, 3);
    const generated = ggufStats().generatedTokens - before;
    assert.ok(generated >= 3 && generated <= 4, `${generated} tokens generated`);
    await settle(50);
    assert.equal(ggufStats().generatedTokens - before, generated, 'nothing is generated after the stream ended');
    assert.equal(ggufStats().activeCalls, 0, 'the context is disposed');
  });

  it('stops soon when the abort comes from outside while a token is being computed', async () => {
    const ac = new AbortController();
    let deltas = 0;
    const before = ggufStats().generatedTokens;
    const started = performance.now();
    const e = await rejection(async () => {
      for await (const part of gguf().stream({ messages: [user('go on')], abortSignal: ac.signal })) {
        if (part.type === 'text-delta' && ++deltas === 3) setImmediate(() => ac.abort());
      }
    });
    assert.ok(e instanceof Error && e.name === 'AbortError', String(e));
    const generated = ggufStats().generatedTokens - before;
    // Without the abort it would run to the end of the context (~240 tokens).
    assert.ok(deltas >= 3 && generated <= 3 + 3, `${deltas} deltas, ${generated} tokens`);
    assert.ok(performance.now() - started < 10_000);
    await settle(50);
    assert.equal(ggufStats().generatedTokens - before, generated);
    assert.equal(ggufStats().activeCalls, 0);
  });

  it('an already-aborted signal yields nothing; a consumer that stops reading stops generation', async () => {
    const ac = new AbortController();
    const reason = new CancelledError('shutdown');
    ac.abort(reason);
    const e = await rejection(() => drain(gguf(), { messages: [user('x')], abortSignal: ac.signal }));
    assert.equal(e, reason);

    const before = ggufStats().generatedTokens;
    let n = 0;
    for await (const part of gguf().stream({ messages: [user('go on')] })) {
      if (part.type === 'text-delta' && ++n === 2) break;
    }
    const generated = ggufStats().generatedTokens - before;
    assert.ok(generated <= 3, `${generated} tokens generated`);
    await settle(50);
    assert.equal(ggufStats().generatedTokens - before, generated);
    assert.equal(ggufStats().activeCalls, 0);
  });
});

describe('gguf: bad files', () => {
  it('a garbage file is model_unavailable, not a crash', async () => {
    const garbage = file('garbage.gguf');
    writeFileSync(garbage, Buffer.from('definitely not a GGUF model\n'.repeat(200)));
    const e = await rejection(() => drain(gguf('temp=0', garbage), { messages: [user('hi')] }));
    assert.ok(LeashError.is(e, 'model_unavailable'), String(e));
    assert.ok(e.message.includes(garbage), e.message);
    // Not cached: the same path loads once it holds a model.
    copyFileSync(tiny.path, garbage);
    const { parts } = await drain(gguf('temp=0', garbage), { messages: [user('hi')], maxTokens: 2 });
    assert.equal(finishOf(parts).usage.output_tokens, 2);
  });

  it('a truncated model is model_unavailable with llama.cpp’s reason', async () => {
    const truncated = file('truncated.gguf');
    const bytes = readFileSync(tiny.path);
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const e = await rejection(() => drain(gguf('temp=0', truncated), { messages: [user('hi')] }));
    assert.ok(LeashError.is(e, 'model_unavailable'), String(e));
    assert.match(e.message, /truncated\.gguf/);
    assert.match(e.message, /file bounds|corrupt|incomplete/i);
  });

  it('a file removed after resolve is model_unavailable when called', async () => {
    const dir = file('gone');
    mkdirSync(dir);
    const path = join(dir, 'm.gguf');
    copyFileSync(tiny.path, path);
    const model = gguf('temp=0', path);
    rmSync(dir, { recursive: true });
    const e = await rejection(() => drain(model, { messages: [user('hi')] }));
    assert.ok(LeashError.is(e, 'model_unavailable') && e.message === `GGUF model not found: ${path}`, String(e));
  });
});
