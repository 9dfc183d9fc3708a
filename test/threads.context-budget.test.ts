// The context budget's rules, for any conversation and any budget (property-based).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ChatMessage } from '../src/models/model.ts';
import { contextCharsFromEnv, DEFAULT_CONTEXT_CHARS, fitToBudget, leftOutNote } from '../src/threads/context-budget.ts';

const message = fc.record({
  role: fc.constantFrom('user' as const, 'assistant' as const, 'system' as const),
  content: fc.string({ unit: 'grapheme', maxLength: 400 }),
});

describe('context budget', () => {
  it('the newest message always reaches the model; a suffix of the rest; within the budget; left-outs counted', () => {
    fc.assert(
      fc.property(
        fc.array(message, { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 100, max: 3000 }),
        (conv, budget) => {
          const out = fitToBudget(conv, budget);
          const note = out[0]?.role === 'system' && /left out to fit/.test(out[0].content) ? out[0] : null;
          const kept = note ? out.slice(1) : out;
          const dropped = conv.length - kept.length;
          if (dropped > 0) assert.deepEqual(note, { role: 'system', content: leftOutNote(dropped) });
          else assert.equal(note, null);
          // Older messages kept are exactly the conversation's tail before the newest.
          assert.deepEqual(kept.slice(0, -1), conv.slice(dropped, -1));
          const newest = conv.at(-1)!;
          const last = kept.at(-1)!;
          assert.equal(last.role, newest.role);
          if (newest.content.length <= budget) assert.equal(last.content, newest.content);
          else {
            assert.match(last.content, /more characters? of this message (was|were) left out to fit the context\.\]$/);
            assert.ok(newest.content.startsWith(last.content.slice(0, last.content.lastIndexOf('\n\n[… '))));
          }
          const chars = kept.reduce((n, m) => n + m.content.length, 0);
          assert.ok(chars <= budget, `${chars} > ${budget}`);
          if (dropped > 0 && kept.length > 1) assert.notEqual(kept[0]!.role, 'assistant');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a cut never splits a surrogate pair', () => {
    const conv: ChatMessage[] = [{ role: 'user', content: '😀'.repeat(2000) }];
    for (let budget = 200; budget < 260; budget++) {
      const text = fitToBudget(conv, budget)[0]!.content;
      assert.ok(text.isWellFormed(), `budget ${budget}`);
      assert.ok(text.length <= budget);
    }
  });

  it('LEASH_THREAD_CONTEXT_CHARS: default, a number, and refusals naming the variable', () => {
    assert.equal(contextCharsFromEnv({}), DEFAULT_CONTEXT_CHARS);
    assert.equal(contextCharsFromEnv({ LEASH_THREAD_CONTEXT_CHARS: ' 5000 ' }), 5000);
    for (const bad of ['abc', '-1', '999', '1e6', '200000000']) {
      assert.throws(() => contextCharsFromEnv({ LEASH_THREAD_CONTEXT_CHARS: bad }), /LEASH_THREAD_CONTEXT_CHARS/);
    }
  });
});
