// The context budget's rules, for any conversation and any budget (property-based).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ChatMessage } from '../src/models/model.ts';
import type { MessageStatus } from '../src/store/store.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { buildModelContext } from '../src/threads/context.ts';
import { contextCharsFromEnv, DEFAULT_CONTEXT_CHARS, fitToBudget, leftOutNote } from '../src/threads/context-budget.ts';
import { loadRecentHistory } from '../src/threads/context-load.ts';
import { tempDbPath } from './helpers/runtime.ts';

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

  it('reading only the end of the thread sends exactly what reading all of it would', async () => {
    const tmp = tempDbPath();
    const store = SqliteStore.open(tmp.path);
    await store.migrate();
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              role: fc.constantFrom('user' as const, 'assistant' as const),
              status: fc.constantFrom('complete' as const, 'cancelled' as const, 'failed' as const),
              size: fc.nat({ max: 700 }),
            }),
            { maxLength: 60 },
          ),
          fc.integer({ min: 1000, max: 6000 }),
          fc.nat({ max: 3 }),
          async (spec, budget, after) => {
            const thread = `thr_${++n}`;
            await store.createThread({ id: thread, owner: 'o', created_at: new Date().toISOString(), metadata: {} });
            const add = (i: number, role: 'user' | 'assistant', status: MessageStatus, c: string) =>
              store.appendMessage({
                id: `${thread}_m${i}`,
                thread_id: thread,
                role,
                content: c,
                status,
                task_id: null,
                created_at: new Date().toISOString(),
              });
            for (const [i, m] of spec.entries())
              await add(i, m.role, m.role === 'user' ? 'complete' : m.status, `${i}:${'x'.repeat(m.size)}`);
            await add(1000, 'user', 'complete', 'the question');
            const answer = await add(1001, 'assistant', 'streaming', '');
            for (let i = 0; i < after; i++) await add(2000 + i, 'user', 'complete', 'queued behind');
            const all = (await store.listMessages(thread)).filter((m) => m.seq < answer.seq);
            const loaded = await loadRecentHistory(store, thread, answer.id, budget);
            assert.equal(loaded.answer.id, answer.id);
            assert.ok(loaded.history.length <= all.length);
            assert.deepEqual(
              buildModelContext(loaded.history, 'sys', { budgetChars: budget, olderLeftOut: loaded.olderLeftOut }),
              buildModelContext(all, 'sys', { budgetChars: budget }),
            );
          },
        ),
        { numRuns: 60 },
      );
    } finally {
      await store.close();
      tmp.cleanup();
    }
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
