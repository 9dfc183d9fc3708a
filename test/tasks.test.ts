import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generate, generateInput } from '../src/tasks/generate.ts';
import { analyze, analyzeInput, splitChunks } from '../src/tasks/analyze.ts';
import { builtinTasks } from '../src/tasks/index.ts';
import { createModelRegistry } from '../src/models/registry.ts';
import type { ModelCallOptions, ModelRegistry } from '../src/models/model.ts';
import { CancelledError } from '../src/core/cancel.ts';
import { LeashError } from '../src/core/errors.ts';
import { createFakeContext } from './helpers/fake-context.ts';

/** A registry whose models record every call (messages and signal) before streaming. */
function recordingRegistry(defaultModel: string): { models: ModelRegistry; calls: ModelCallOptions[] } {
  const inner = createModelRegistry({ defaultModel, env: {} });
  const calls: ModelCallOptions[] = [];
  const models: ModelRegistry = {
    defaultModel,
    allowedModels: inner.allowedModels,
    check: (spec) => inner.check(spec),
    list: () => inner.list(),
    resolve(spec) {
      const m = inner.resolve(spec);
      return {
        id: m.id,
        stream(opts) {
          calls.push(opts);
          return m.stream(opts);
        },
      };
    },
  };
  return { models, calls };
}

const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

function assertMonotonic(values: (number | null)[]): void {
  const nums = values.filter((v): v is number => v !== null);
  for (let i = 1; i < nums.length; i++) assert.ok(nums[i]! >= nums[i - 1]!, `progress went back: ${nums.join(',')}`);
  for (const v of nums) assert.ok(v >= 0 && v <= 100);
}

describe('builtinTasks', () => {
  it('holds generate and analyze with their deadlines', () => {
    assert.deepEqual(
      builtinTasks.map((t) => t.type),
      ['generate', 'analyze', 'chat', 'completion'],
    );
    assert.equal(generate.deadlineMs, 10 * 60_000);
    assert.equal(analyze.deadlineMs, 30 * 60_000);
    assert.equal(analyze.resume, true);
  });
});

describe('generate: input', () => {
  it('accepts a valid input', () => {
    assert.equal(generateInput.safeParse({ prompt: 'hi' }).success, true);
    assert.equal(
      generateInput.safeParse({ prompt: 'hi', system: 's', model: 'simulated', max_tokens: 100_000 }).success,
      true,
    );
  });
  const bad: [string, unknown][] = [
    ['no prompt', {}],
    ['empty prompt', { prompt: '' }],
    ['prompt not a string', { prompt: 42 }],
    ['prompt too long', { prompt: 'x'.repeat(1_000_001) }],
    ['unknown key', { prompt: 'hi', temperature: 0.5 }],
    ['system not a string', { prompt: 'hi', system: 1 }],
    ['max_tokens zero', { prompt: 'hi', max_tokens: 0 }],
    ['max_tokens fractional', { prompt: 'hi', max_tokens: 1.5 }],
    ['max_tokens too large', { prompt: 'hi', max_tokens: 100_001 }],
    ['max_tokens a string', { prompt: 'hi', max_tokens: '10' }],
    ['not an object', 'hi'],
  ];
  for (const [name, input] of bad) {
    it(`rejects ${name}`, () => assert.equal(generateInput.safeParse(input).success, false));
  }
});

describe('generate: run', () => {
  it('streams deltas that concatenate to the result text', async () => {
    const f = createFakeContext({ defaultModel: 'simulated?tps=0' });
    const result = await generate.run({ prompt: 'tell me something' }, f.ctx);
    assert.ok(f.emitted.length >= 50, `emitted ${f.emitted.length} deltas`);
    assert.equal(f.output(), result.text);
    assert.equal(result.model, 'simulated?tps=0');
    assert.deepEqual(result.usage, { input_tokens: 3, output_tokens: f.emitted.length });
    assert.equal(f.progress[0]?.percent, null, 'indeterminate without max_tokens');
    assert.equal(f.progress.at(-1)?.percent, 100);
  });

  it('sends the system prompt and the prompt, and passes ctx.signal unchanged', async () => {
    const { models, calls } = recordingRegistry('simulated:echo?tps=0');
    const f = createFakeContext({ models });
    const result = await generate.run({ prompt: 'what is 2+2?', system: 'Be exact.' }, f.ctx);
    assert.equal(result.text, '[system] Be exact.\n[user] what is 2+2?');
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.abortSignal, f.ctx.signal);
  });

  it('uses the model named in the input', async () => {
    const f = createFakeContext({ defaultModel: 'simulated?tps=0' });
    const result = await generate.run({ prompt: 'p', model: 'simulated:echo?tps=0' }, f.ctx);
    assert.equal(result.model, 'simulated:echo?tps=0');
    assert.equal(result.text, '[user] p');
    // Outside the allowlist (here the default one: the default model and simulated*),
    // refused by the registry when the handler resolves it, too.
    await assert.rejects(generate.run({ prompt: 'p', model: 'nope:x' }, f.ctx), (e) =>
      LeashError.is(e, 'model_not_allowed'),
    );
  });

  it('reports progress as tokens/max_tokens and stops at max_tokens', async () => {
    const f = createFakeContext({ defaultModel: 'simulated?tps=0&tokens=500' });
    const result = await generate.run({ prompt: 'p', max_tokens: 40 }, f.ctx);
    assert.equal(f.emitted.length, 40);
    assert.equal(result.usage.output_tokens, 40);
    const pcts = f.progress.map((p) => p.percent);
    assert.equal(pcts[0], 0);
    assert.ok(pcts.includes(50), `has the halfway mark: ${pcts.join(',')}`);
    assert.equal(pcts.at(-1), 100);
    assertMonotonic(pcts);
    assert.ok(f.progress.some((p) => p.message === '20/40 tokens'));
  });

  it('stops at once on cancel, with the signal reason and nothing left running', async () => {
    const before = timeouts();
    // Cancelled right after the third token (no timer: the machine's load must not decide
    // how many tokens come first); the model must not emit a fourth.
    const f = createFakeContext({
      defaultModel: 'simulated?tps=50&tokens=1000',
      onEmit: (_t, n) => {
        if (n === 3) f.cancel('user');
      },
    });
    await assert.rejects(
      generate.run({ prompt: 'long' }, f.ctx),
      (e) => e instanceof CancelledError && e.reason === 'user',
    );
    assert.equal(f.emitted.length, 3);
    assert.equal(timeouts(), before);
  });
});

describe('analyze: input', () => {
  it('accepts a valid input', () => {
    assert.equal(analyzeInput.safeParse({ document: 'doc' }).success, true);
    assert.equal(
      analyzeInput.safeParse({ document: 'doc', chunk_size: 200, instructions: 'find bugs', model: 'simulated' })
        .success,
      true,
    );
  });
  const bad: [string, unknown][] = [
    ['no document', {}],
    ['empty document', { document: '' }],
    ['document not a string', { document: ['a'] }],
    ['chunk_size too small', { document: 'd', chunk_size: 199 }],
    ['chunk_size too large', { document: 'd', chunk_size: 100_001 }],
    ['chunk_size fractional', { document: 'd', chunk_size: 500.5 }],
    ['unknown key', { document: 'd', chunks: 3 }],
    ['model not a string', { document: 'd', model: 1 }],
  ];
  for (const [name, input] of bad) {
    it(`rejects ${name}`, () => assert.equal(analyzeInput.safeParse(input).success, false));
  }
  it('rejects a document over 5,000,000 chars', () => {
    assert.equal(analyzeInput.safeParse({ document: 'x'.repeat(5_000_001) }).success, false);
  });
});

describe('analyze: splitChunks', () => {
  const lines = Array.from({ length: 100 }, (_, i) => `line ${i} ${'word '.repeat(i % 13)}`).join('\n') + '\n';

  it('cuts on line boundaries and concatenates back exactly', () => {
    const chunks = splitChunks(lines, 200);
    assert.equal(chunks.join(''), lines);
    assert.ok(chunks.length > 5);
    for (const c of chunks) {
      assert.ok(c.length <= 200 && c.length > 0);
      assert.ok(c.endsWith('\n'), `chunk ends mid-line: ${JSON.stringify(c.slice(-20))}`);
    }
  });

  it('fills chunks greedily (no two neighbours would fit in one)', () => {
    const chunks = splitChunks(lines, 300);
    for (let i = 1; i < chunks.length; i++) {
      const firstLine = chunks[i]!.slice(0, chunks[i]!.indexOf('\n') + 1);
      assert.ok(chunks[i - 1]!.length + firstLine.length > 300);
    }
  });

  it('splits a line longer than the chunk size, at whitespace where it can', () => {
    const long = 'abcdefghi '.repeat(100); // 1000 chars, one line, no newline
    const chunks = splitChunks(`short\n${long}\nend`, 200);
    assert.equal(chunks.join(''), `short\n${long}\nend`);
    for (const c of chunks) assert.ok(c.length <= 200);
    assert.ok(chunks.slice(1, -1).every((c) => c.endsWith(' ') || c.endsWith('\n')));
    const solid = 'x'.repeat(450);
    assert.deepEqual(
      splitChunks(solid, 200).map((c) => c.length),
      [200, 200, 50],
    );
    assert.deepEqual(splitChunks('short', 200), ['short']);
  });
});

describe('analyze: run', () => {
  const doc = Array.from({ length: 40 }, (_, i) => `Paragraph ${i}: the quick brown fox number ${i} jumps.`).join('\n');

  it('analyzes every chunk, reports progress to 100, checkpoints each chunk and summarizes', async () => {
    const { models, calls } = recordingRegistry('simulated:echo?tps=0');
    const f = createFakeContext({ models });
    const chunks = splitChunks(doc, 400);
    const n = chunks.length;
    assert.ok(n >= 4);
    const result = await analyze.run({ document: doc, chunk_size: 400, instructions: 'Find foxes.' }, f.ctx);

    assert.equal(result.chunks, n);
    assert.equal(result.findings.length, n);
    assert.equal(calls.length, n + 1, 'one call per chunk plus the summary');
    for (let i = 0; i < n; i++) {
      const userMsg = calls[i]!.messages.find((m) => m.role === 'user')!.content;
      assert.ok(userMsg.startsWith(`Analyze this part (${i + 1} of ${n})`));
      assert.ok(userMsg.includes('Find foxes.'));
      assert.ok(userMsg.endsWith(chunks[i]!), 'the model saw the whole chunk');
      assert.ok(result.findings[i]!.includes(chunks[i]!.trim()), 'the finding is the model answer');
      assert.equal(calls[i]!.abortSignal, f.ctx.signal);
    }
    const summaryPrompt = calls[n]!.messages.find((m) => m.role === 'user')!.content;
    for (const finding of result.findings) assert.ok(summaryPrompt.includes(finding));
    assert.ok(result.summary.startsWith('[system]'));

    const pcts = f.progress.map((p) => p.percent);
    assertMonotonic(pcts);
    assert.equal(pcts.at(-1), 100);
    assert.ok(f.progress.some((p) => p.message === `chunk 3/${n}`));
    assert.deepEqual(
      f.checkpoints.map((c) => (c as { done: number }).done),
      Array.from({ length: n }, (_, i) => i + 1),
    );
    assert.deepEqual((f.checkpoints.at(-1) as { findings: string[] }).findings, result.findings);
    const out = f.output();
    assert.ok(out.includes(`## Part 1/${n}`) && out.includes(`## Part ${n}/${n}`) && out.includes('## Summary'));
    assert.ok(out.endsWith(result.summary));
  });

  it('resumes from a checkpoint, skipping the chunks already done', async () => {
    const n = splitChunks(doc, 400).length;
    const { models, calls } = recordingRegistry('simulated:echo?tps=0');
    const f = createFakeContext({ models, resumeState: { done: 2, chunks: n, findings: ['FIRST', 'SECOND'] } });
    const result = await analyze.run({ document: doc, chunk_size: 400 }, f.ctx);
    assert.equal(calls.length, n - 2 + 1);
    assert.ok(calls[0]!.messages[1]!.content.startsWith(`Analyze this part (3 of ${n})`));
    assert.deepEqual(result.findings.slice(0, 2), ['FIRST', 'SECOND']);
    assert.equal(result.findings.length, n);
    assert.equal((f.checkpoints[0] as { done: number }).done, 3);
    assert.ok(!f.output().includes('## Part 1/') && !f.output().includes('## Part 2/'));
    assert.ok(calls.at(-1)!.messages[1]!.content.includes('Part 1: FIRST'));
    assert.equal(f.progress.at(-1)?.percent, 100);
  });

  it('resumes straight to the summary when every chunk was done', async () => {
    const n = splitChunks(doc, 400).length;
    const { models, calls } = recordingRegistry('simulated:echo?tps=0');
    const findings = Array.from({ length: n }, (_, i) => `F${i}`);
    const f = createFakeContext({ models, resumeState: { done: n, chunks: n, findings } });
    const result = await analyze.run({ document: doc, chunk_size: 400 }, f.ctx);
    assert.equal(calls.length, 1);
    assert.deepEqual(result.findings, findings);
  });

  it('starts over when the checkpoint does not match', async () => {
    const n = splitChunks(doc, 400).length;
    for (const bad of [
      { done: 2, chunks: n + 1, findings: ['a', 'b'] },
      { done: 3, chunks: n, findings: ['a'] },
      'junk',
    ]) {
      const { models, calls } = recordingRegistry('simulated:echo?tps=0');
      const f = createFakeContext({ models, resumeState: bad });
      const result = await analyze.run({ document: doc, chunk_size: 400 }, f.ctx);
      assert.equal(calls.length, n + 1);
      assert.ok(!result.findings.includes('a'));
    }
  });

  it('stops between chunks when cancelled, checkpointing nothing more', async () => {
    const { models, calls } = recordingRegistry('simulated?tps=0');
    const f = createFakeContext({
      models,
      onCheckpoint: (_s, k) => {
        if (k === 2) f.cancel('user');
      },
    });
    await assert.rejects(analyze.run({ document: doc, chunk_size: 400 }, f.ctx), CancelledError);
    assert.equal(f.checkpoints.length, 2);
    assert.equal(calls.length, 2);
  });

  it('stops mid-chunk at once when cancelled, leaving no timer', async () => {
    const before = timeouts();
    const { models, calls } = recordingRegistry('simulated?tps=50&tokens=1000');
    let cancelledAt = 0;
    const f = createFakeContext({
      models,
      onEmit: (_t, k) => {
        if (k === 4) setTimeout(() => ((cancelledAt = performance.now()), f.cancel('deadline')), 5);
      },
    });
    await assert.rejects(
      analyze.run({ document: doc, chunk_size: 400 }, f.ctx),
      (e) => e instanceof CancelledError && e.reason === 'deadline',
    );
    assert.ok(performance.now() - cancelledAt < 30);
    assert.equal(calls.length, 1);
    assert.equal(f.checkpoints.length, 0);
    assert.equal(timeouts(), before);
  });
});
