// One suite every model provider passes (as test/store.conformance.ts is for stores):
// the Model contract of src/models/model.ts. Text arrives as deltas and ends with one
// `finish` part carrying usage; a signal aborted before the call makes no upstream
// call; an abort mid-stream throws the signal's reason, lets no delta through after it
// and closes the upstream connection; an abort after the end changes nothing; an
// upstream failure is a LeashError with an `upstream_*` code.

import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import type { Model, ModelCallOptions, ModelStreamPart } from '../src/models/model.ts';
import { CancelledError } from '../src/core/cancel.ts';
import { LeashError } from '../src/core/errors.ts';

export interface ModelUnderTest {
  /** A model streaming `count` tokens `intervalMs` apart, and the text it will produce when known. */
  streaming(count: number, intervalMs: number): { model: Model; text?: string };
  /** A model whose upstream answers HTTP 500; absent for in-process models. */
  failing?(): Model;
  /** Upstream calls made so far (always 0 for in-process models). */
  calls(): number;
  /** Resolves once the latest upstream call's connection has closed; null for in-process models. */
  lastCallClosed(): Promise<unknown> | null;
  close(): Promise<void>;
}

const messages: ModelCallOptions['messages'] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Say hello.' },
];

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref()),
  ]);

export function modelConformance(name: string, setup: () => Promise<ModelUnderTest>): void {
  describe(`Model conformance: ${name}`, () => {
    let m: ModelUnderTest;
    before(async () => {
      m = await setup();
    });
    after(() => m.close());

    it('streams text deltas, then exactly one finish part, last, with usage', async () => {
      const { model, text } = m.streaming(6, 1);
      const parts: ModelStreamPart[] = [];
      for await (const p of model.stream({ messages })) parts.push(p);
      const finishes = parts.filter((p) => p.type === 'finish');
      assert.equal(finishes.length, 1);
      assert.equal(parts.at(-1)?.type, 'finish');
      const deltas = parts.flatMap((p) => (p.type === 'text-delta' ? [p.text] : []));
      assert.ok(deltas.length > 0 && deltas.every((d) => typeof d === 'string'));
      if (text !== undefined) assert.equal(deltas.join(''), text);
      const f = finishes[0] as Extract<ModelStreamPart, { type: 'finish' }>;
      assert.equal(f.finishReason, 'stop');
      for (const k of ['input_tokens', 'output_tokens'] as const) {
        assert.ok(Number.isInteger(f.usage[k]) && f.usage[k] >= 0, `${k}: ${f.usage[k]}`);
      }
      assert.ok(f.usage.output_tokens > 0);
    });

    it('a signal aborted before the call: throws its reason, and no upstream call is made', async () => {
      const before = m.calls();
      const ac = new AbortController();
      const reason = new CancelledError('user');
      ac.abort(reason);
      const { model } = m.streaming(6, 1);
      await assert.rejects(
        (async () => {
          for await (const _ of model.stream({ messages, abortSignal: ac.signal })) assert.fail('a part arrived');
        })(),
        (e: unknown) => e === reason,
      );
      assert.equal(m.calls(), before);
    });

    it('an abort mid-stream throws its reason, lets no delta through after it and closes the upstream call', async () => {
      const { model } = m.streaming(200, 20);
      const ac = new AbortController();
      const reason = new CancelledError('user');
      let afterAbort = 0;
      let err: unknown;
      let seen = 0;
      try {
        for await (const p of model.stream({ messages, abortSignal: ac.signal })) {
          if (p.type !== 'text-delta') continue;
          if (ac.signal.aborted) afterAbort++;
          if (++seen === 2) ac.abort(reason);
        }
      } catch (e) {
        err = e;
      }
      assert.equal(err, reason, 'the stream throws the signal reason');
      assert.equal(afterAbort, 0);
      const closed = m.lastCallClosed();
      if (closed !== null) await within(closed, 2_000, 'the upstream connection closing');
    });

    it('an abort after the end changes nothing (no throw, no unhandled rejection)', async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (e: unknown): void => void unhandled.push(e);
      process.on('unhandledRejection', onUnhandled);
      try {
        const { model } = m.streaming(3, 1);
        const ac = new AbortController();
        let parts = 0;
        for await (const _ of model.stream({ messages, abortSignal: ac.signal })) parts++;
        ac.abort(new CancelledError('user'));
        await new Promise((r) => setTimeout(r, 20));
        assert.ok(parts > 0);
        assert.deepEqual(unhandled, []);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });

    it('an upstream failure is a LeashError upstream_*', async (t) => {
      if (m.failing === undefined) {
        t.diagnostic(`${name} has no upstream`);
        return;
      }
      const model = m.failing();
      await assert.rejects(
        (async () => {
          for await (const _ of model.stream({ messages })) {
            /* drain */
          }
        })(),
        (e: unknown) => e instanceof LeashError && e.code.startsWith('upstream_'),
      );
    });
  });
}
