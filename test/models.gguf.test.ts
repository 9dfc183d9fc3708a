// The `gguf:` provider, for real: node-llama-cpp's prebuilt llama.cpp runs a tiny
// random-weight model that the tests write themselves (test/helpers/tiny-gguf.ts).
// Its text is gibberish, so the tests check counts, types, determinism and the stop path.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { tinyByteToken, tinyGguf, writeTinyGguf } from './helpers/tiny-gguf.ts';
import { GGUF_DEFAULT_LIMITS, parseGgufSpec, type GgufLimits } from '../src/models/gguf/spec.ts';
import { acquireGgufModel, ggufStats, loadGgufModel, unloadGgufModels } from '../src/models/gguf/loaded-models.ts';
import { AnswerFilter, StreamDetokenizer, buildPrompt, transcriptPrompt } from '../src/models/gguf/prompt.ts';
import { createGgufModel } from '../src/models/gguf/stream.ts';
import { ggufProvider } from '../src/models/gguf/provider.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import type { Token } from 'node-llama-cpp';
import type { Model, ModelStreamPart } from '../src/models/model.ts';
import { CancelledError } from '../src/core/cancel.ts';
import { LeashError } from '../src/core/errors.ts';
import { drain } from './helpers/model-stream.ts';

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

/** The tiny model's directory as LEASH_MODELS_DIR; room for every file these tests load. */
const limits = (more: Partial<GgufLimits> = {}): GgufLimits => ({
  ...GGUF_DEFAULT_LIMITS,
  modelsDir: tiny.dir,
  maxLoaded: 16,
  ...more,
});

/** A model on a file in the tiny model's dir; one thread keeps it fast and repeatable on small machines. */
const gguf = (query = 'temp=0', path = tiny.path, more: Partial<GgufLimits> = {}): Model => {
  const name = `${relative(tiny.dir, path)}?threads=1&${query}`;
  return ggufProvider({ env: NO_ENV, limits: limits(more) }).resolve(name, `gguf:${name}`);
};

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
  it('parses the file name and options', () => {
    const s = parseGgufSpec('models/a.gguf?threads=2&ctx=512&temp=0.5&seed=9', 'gguf:…');
    assert.equal(s.file, 'models/a.gguf');
    assert.deepEqual(s.options, { threads: 2, ctx: 512, temp: 0.5, seed: 9 });
    assert.deepEqual(parseGgufSpec('b.gguf', 'gguf:b.gguf').options, {});
  });

  it('rejects bad options as unknown_model', () => {
    for (const name of [
      'a.gguf?temp=hot',
      'a.gguf?ctx=1.5',
      'a.gguf?threads=-1',
      'a.gguf?threads=0',
      'a.gguf?top=3',
      '?ctx=512',
      '',
    ]) {
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

  it('a request may ask for less context and fewer threads than the operator allows, never more', () => {
    const capped = { ...GGUF_DEFAULT_LIMITS, maxContext: 1024, threads: 2 };
    assert.deepEqual(parseGgufSpec('a.gguf?ctx=512&threads=1', 'x', capped).options, { ctx: 512, threads: 1 });
    assert.deepEqual(parseGgufSpec('a.gguf?ctx=1024&threads=2', 'x', capped).options, { ctx: 1024, threads: 2 });
    for (const q of ['ctx=1025', 'ctx=1048576', 'threads=3', 'threads=1024']) {
      assert.throws(
        () => parseGgufSpec(`a.gguf?${q}`, `gguf:a.gguf?${q}`, capped),
        (e: unknown) => LeashError.is(e, 'unknown_model') && /from \d+ to (1024|2) on this server/.test(e.message),
        q,
      );
    }
  });

  it('is a default provider of the registry, on files in LEASH_MODELS_DIR only', () => {
    const registry = createModelRegistry({
      defaultModel: 'simulated',
      env: { LEASH_MODELS_DIR: tiny.dir },
      allow: ['gguf:*'],
    });
    assert.equal(registry.resolve('gguf:tiny.gguf').id, 'gguf:tiny.gguf');
    assert.ok(
      registry.list().some((m) => m.id === 'gguf:tiny.gguf'),
      'listed from the directory',
    );
    assert.throws(
      () => registry.resolve(`gguf:nope.gguf?temp=0`),
      (e: unknown) => LeashError.is(e, 'model_unavailable') && /Not a loadable model/.test(e.message),
    );
    // A directory is not a model file.
    assert.throws(
      () => registry.resolve('gguf:.'),
      (e: unknown) => LeashError.is(e, 'model_unavailable'),
    );
    // An unusable default model fails at startup.
    assert.throws(
      () => createModelRegistry({ defaultModel: 'gguf:nope.gguf', env: { LEASH_MODELS_DIR: tiny.dir } }),
      (e: unknown) => LeashError.is(e, 'model_unavailable'),
    );
  });

  it('without LEASH_MODELS_DIR gguf models are off, with a message for the operator', () => {
    const registry = createModelRegistry({ defaultModel: 'simulated', env: NO_ENV, allow: ['gguf:*'] });
    for (const spec of ['gguf:tiny.gguf', `gguf:${tiny.path}`, 'gguf:/etc/passwd']) {
      assert.throws(
        () => registry.resolve(spec),
        (e: unknown) =>
          LeashError.is(e, 'model_unavailable') &&
          e.message ===
            'gguf models are off on this server: the operator sets LEASH_MODELS_DIR to the directory of .gguf files to serve.',
      );
    }
    assert.ok(!registry.list().some((m) => m.id.startsWith('gguf:')));
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

    const plain = await loadGgufModel(tiny.path, NO_ENV, limits());
    const p = buildPrompt(nlc, plain, messages);
    assert.equal(p.format, 'transcript');
    assert.equal(transcriptPrompt(messages), 'system: be brief\nuser: hello world\nassistant:');
    assert.equal(p.tokens[0], plain.tokens.bos);
    assert.equal(plain.detokenize(p.tokens.slice(1)), transcriptPrompt(messages));

    const withTemplate = await loadGgufModel(templated, NO_ENV, limits());
    const t = buildPrompt(nlc, withTemplate, messages);
    assert.notEqual(t.format, 'transcript');
    assert.equal(t.tokens[0], withTemplate.tokens.bos, 'the template puts the BOS token first');
    const text = withTemplate.detokenize(t.tokens.slice(1));
    // (node-llama-cpp tokenizes the template's own text apart, with SentencePiece's leading space.)
    assert.match(text, /<system>be brief ?\n<user>hello world ?\n<assistant>$/);

    const { parts } = await drain(createGgufModel('t', { path: templated, options: { threads: 1, temp: 0 } }), {
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
    const model = await loadGgufModel(tiny.path, NO_ENV, limits());
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
  const NOT_LOADABLE = "Not a loadable model: there is no GGUF model by that name in this server's models directory.";
  const notLoadable = (e: unknown): boolean => LeashError.is(e, 'model_unavailable') && e.message === NOT_LOADABLE;

  it('a file without the GGUF magic is refused at resolve, echoing none of its bytes', () => {
    const garbage = file('garbage.gguf');
    writeFileSync(garbage, Buffer.from('root:x:0:0 definitely not a GGUF model\n'.repeat(200)));
    assert.throws(() => gguf('temp=0', garbage), notLoadable);
  });

  it('a corrupt GGUF file fails to load: the caller gets the same answer, the log gets the reason', async () => {
    const corrupt = file('corrupt.gguf');
    writeFileSync(corrupt, Buffer.concat([Buffer.from('GGUF'), Buffer.from('root:x:0:0 garbage\n'.repeat(200))]));
    const logged: { obj: Record<string, unknown>; msg: string }[] = [];
    const logger = { warn: (obj: object, msg: string) => logged.push({ obj: obj as Record<string, unknown>, msg }) };
    const model = ggufProvider({ env: NO_ENV, limits: limits(), logger }).resolve('corrupt.gguf', 'gguf:corrupt.gguf');
    const e = await rejection(() => drain(model, { messages: [user('hi')] }));
    assert.ok(notLoadable(e), String(e));
    assert.equal(logged.length, 1);
    assert.equal(logged[0]!.obj.path, corrupt, 'the server log says which file and why');
    // Not cached: the same name loads once it holds a model.
    copyFileSync(tiny.path, corrupt);
    const { parts } = await drain(gguf('temp=0', corrupt), { messages: [user('hi')], maxTokens: 2 });
    assert.equal(finishOf(parts).usage.output_tokens, 2);
  });

  it('a truncated model is not loadable; llama.cpp’s reason goes to the log only', async () => {
    const truncated = file('truncated.gguf');
    const bytes = readFileSync(tiny.path);
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const logged: Record<string, unknown>[] = [];
    const logger = { warn: (obj: object) => logged.push(obj as Record<string, unknown>) };
    const model = ggufProvider({ env: NO_ENV, limits: limits(), logger }).resolve(
      'truncated.gguf',
      'gguf:truncated.gguf',
    );
    const e = await rejection(() => drain(model, { messages: [user('hi')] }));
    assert.ok(notLoadable(e), String(e));
    assert.match(
      String(logged[0]?.llamaLog ?? (logged[0]?.err as Error)?.message),
      /file bounds|corrupt|incomplete|fail/i,
    );
  });

  it('a file removed after resolve gets the same answer when called', async () => {
    const dir = file('gone');
    mkdirSync(dir);
    const path = join(dir, 'm.gguf');
    copyFileSync(tiny.path, path);
    const model = gguf('temp=0', path);
    rmSync(dir, { recursive: true });
    const e = await rejection(() => drain(model, { messages: [user('hi')] }));
    assert.ok(notLoadable(e), String(e));
  });
});

describe('gguf: loaded models are bounded and unloaded when idle', () => {
  const call = { messages: [user('hi')], maxTokens: 2 };

  it('a model no call used for LEASH_GGUF_IDLE_MS is unloaded; a call in progress keeps it', async () => {
    await unloadGgufModels();
    const before = ggufStats();
    const more = { idleMs: 150 };
    await drain(gguf('temp=0', tiny.path, more), call);
    assert.equal(ggufStats().loadedModels, 1);
    await eventuallyTrue(() => ggufStats().loadedModels === 0, 5_000);
    assert.equal(ggufStats().unloads - before.unloads, 1);

    // Held across the idle time by a slow consumer: not unloaded under it.
    const stream = gguf('temp=0', tiny.path, more).stream({ messages: [user('go on')], maxTokens: 20 });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    await settle(400);
    assert.equal(ggufStats().loadedModels, 1, 'in use: still loaded');
    for (let r = await it.next(); !r.done; r = await it.next());
    await eventuallyTrue(() => ggufStats().loadedModels === 0, 5_000);
    assert.equal(ggufStats().loads - before.loads, 2);
  });

  it('at most LEASH_GGUF_MAX_LOADED models: the least recently used idle one is unloaded for a new one', async () => {
    await unloadGgufModels();
    const a = file('lru-a.gguf');
    const b = file('lru-b.gguf');
    const c = file('lru-c.gguf');
    for (const f of [a, b, c]) copyFileSync(tiny.path, f);
    const more = { maxLoaded: 2 };
    const before = ggufStats();
    await drain(gguf('temp=0', a, more), call);
    await drain(gguf('temp=0', b, more), call);
    await drain(gguf('temp=0', a, more), call); // a is now the most recently used
    assert.equal(ggufStats().loadedModels, 2);
    await drain(gguf('temp=0', c, more), call); // evicts b
    assert.equal(ggufStats().loadedModels, 2);
    assert.equal(ggufStats().unloads - before.unloads, 1);
    const loads = ggufStats().loads;
    await drain(gguf('temp=0', a, more), call);
    assert.equal(ggufStats().loads, loads, 'a stayed loaded');
    await drain(gguf('temp=0', b, more), call);
    assert.equal(ggufStats().loads, loads + 1, 'b was unloaded and loads again');
  });

  it('when every loaded model is in a call, a new one fails at once with 503 models_busy', async () => {
    await unloadGgufModels();
    const a = file('busy-a.gguf');
    const b = file('busy-b.gguf');
    for (const f of [a, b]) copyFileSync(tiny.path, f);
    const more = { maxLoaded: 1 };
    const stream = gguf('temp=0', a, more).stream({ messages: [user('go on')], maxTokens: 20 });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const e = await rejection(() => drain(gguf('temp=0', b, more), call));
    assert.ok(LeashError.is(e, 'models_busy'), String(e));
    const { httpStatusOf } = await import('../src/core/error-codes.ts');
    assert.equal(httpStatusOf('models_busy'), 503);
    assert.equal(ggufStats().loadedModels, 1);
    for (let r = await it.next(); !r.done; r = await it.next());
    const { parts } = await drain(gguf('temp=0', b, more), call);
    assert.equal(finishOf(parts).usage.output_tokens, 2, 'b loads once a is free');
    assert.equal(ggufStats().loadedModels, 1);
  });

  it('a lease released twice counts once: the other call still holds the model', async () => {
    await unloadGgufModels();
    const b = file('lease-b.gguf');
    copyFileSync(tiny.path, b);
    const one = acquireGgufModel(tiny.path, NO_ENV, limits({ maxLoaded: 1 }));
    const two = acquireGgufModel(tiny.path, NO_ENV, limits({ maxLoaded: 1 }));
    await one.model;
    one.release();
    one.release();
    assert.throws(
      () => acquireGgufModel(b, NO_ENV, limits({ maxLoaded: 1 })),
      (e: unknown) => LeashError.is(e, 'models_busy'),
    );
    two.release();
    const three = acquireGgufModel(b, NO_ENV, limits({ maxLoaded: 1 }));
    await three.model;
    three.release();
    assert.equal(ggufStats().loadedModels, 1);
  });
});

async function eventuallyTrue(f: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > end) assert.fail('condition not met in time');
    await settle(20);
  }
}
