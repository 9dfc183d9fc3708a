// One suite every model provider passes (as test/store.conformance.ts is for stores):
// the Model contract of src/models/model.ts.
//   - Text arrives as deltas and ends with exactly one `finish` part, last, carrying usage.
//   - A signal aborted before the call makes no upstream call; an abort after the call
//     started but before the first byte, or mid-stream, throws the signal's reason, lets
//     no part through after it and closes the upstream connection; an abort after the
//     end changes nothing.
//   - A failure is a LeashError whose code says what failed, the same code for the same
//     failure whichever provider met it (FAILURE_CODES), thrown instead of a finish part.

import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import type { Model, ModelCallOptions, ModelStreamPart, Usage } from '../src/models/model.ts';
import type { ErrorCode } from '../src/core/error-codes.ts';
import { CancelledError } from '../src/core/cancel.ts';
import { LeashError } from '../src/core/errors.ts';
import { drain } from './helpers/model-stream.ts';

/** The failures a provider may meet, and the one code each is answered with. */
export const FAILURE_CODES = {
  /** The upstream answered an HTTP error (500). */
  http_error: 'upstream_error',
  /** Nothing listens at the upstream's address. */
  unreachable: 'upstream_unreachable',
  /** The connection was lost after the first deltas. */
  cut_off: 'upstream_unreachable',
  /** A 2xx answer that is not a valid stream. */
  bad_stream: 'upstream_bad_response',
  /** The upstream sent an error event after the first deltas. */
  error_event: 'upstream_error',
  /** A local model file that does not load. */
  unloadable: 'model_unavailable',
} as const satisfies Record<string, ErrorCode>;
export type FailureKind = keyof typeof FAILURE_CODES;

/** Failures that happen after some text: the deltas before them still arrive. */
const AFTER_TEXT: ReadonlySet<FailureKind> = new Set(['cut_off', 'error_event']);

export interface ModelUnderTest {
  /**
   * A model streaming `count` tokens `intervalMs` apart, and what is known of its answer
   * to CONFORMANCE_MESSAGES: the text, the usage, and the finish reason (default `stop`).
   */
  streaming(
    count: number,
    intervalMs: number,
  ): { model: Model; text?: string; usage?: Usage; finishReason?: 'stop' | 'length' };
  /**
   * Providers with an upstream: a model whose upstream accepts the call and sends no
   * byte. Absent for in-process models, which are aborted as soon as the call started.
   */
  silent?(): Model;
  /** A model meeting each failure this provider can meet; kinds left out are reported as skipped. */
  failures: Partial<Record<FailureKind, () => Model>>;
  /** Upstream calls made so far (always 0 for in-process models). */
  calls(): number;
  /** Resolves once the latest upstream call's connection has closed; null for in-process models. */
  lastCallClosed(): Promise<unknown> | null;
  close(): Promise<void>;
}

export const CONFORMANCE_MESSAGES: ModelCallOptions['messages'] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Say hello.' },
];
const messages = CONFORMANCE_MESSAGES;

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref()),
  ]);

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function modelConformance(name: string, setup: () => Promise<ModelUnderTest>): void {
  describe(`Model conformance: ${name}`, () => {
    let m: ModelUnderTest;
    before(async () => {
      m = await setup();
    });
    after(() => m.close());

    it('streams text deltas, then exactly one finish part, last, with usage', async () => {
      const { model, text, usage, finishReason = 'stop' } = m.streaming(6, 1);
      const { parts, deltas } = await drain(model, { messages });
      const finishes = parts.filter((p) => p.type === 'finish');
      assert.equal(finishes.length, 1);
      assert.equal(parts.at(-1)?.type, 'finish');
      assert.ok(deltas.length > 0 && deltas.every((d) => typeof d === 'string'));
      if (text !== undefined) assert.equal(deltas.join(''), text);
      const f = finishes[0] as Extract<ModelStreamPart, { type: 'finish' }>;
      assert.equal(f.finishReason, finishReason);
      assert.deepEqual(Object.keys(f.usage).sort(), ['input_tokens', 'output_tokens']);
      for (const k of ['input_tokens', 'output_tokens'] as const) {
        assert.ok(Number.isInteger(f.usage[k]) && f.usage[k] >= 0, `${k}: ${f.usage[k]}`);
      }
      assert.ok(f.usage.input_tokens > 0 && f.usage.output_tokens > 0, JSON.stringify(f.usage));
      if (usage !== undefined) assert.deepEqual(f.usage, usage);
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

    it('an abort after the call started, before the first byte: throws its reason, no part, the upstream call closed', async () => {
      const before = m.calls();
      const ac = new AbortController();
      const reason = new CancelledError('user');
      const model = m.silent?.() ?? m.streaming(200, 20).model;
      const first = model.stream({ messages, abortSignal: ac.signal })[Symbol.asyncIterator]().next();
      // Upstream: once the request is there. In-process: at once, while the call gets going.
      if (m.silent !== undefined) await until(() => m.calls() > before, 5_000, 'the upstream request');
      ac.abort(reason);
      await assert.rejects(within(first, 5_000, 'the stream ending after the abort'), (e: unknown) => e === reason);
      const closed = m.lastCallClosed();
      if (m.silent !== undefined) {
        assert.ok(closed !== null, 'a provider with an upstream says when its call closed');
        await within(closed, 2_000, 'the upstream connection closing');
      }
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
          if (ac.signal.aborted) afterAbort++;
          if (p.type === 'text-delta' && ++seen === 2) ac.abort(reason);
        }
      } catch (e) {
        err = e;
      }
      assert.equal(err, reason, 'the stream throws the signal reason');
      assert.equal(seen, 2);
      assert.equal(afterAbort, 0, 'no part after the abort, the finish part neither');
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
        const parts: ModelStreamPart[] = [];
        for await (const p of model.stream({ messages, abortSignal: ac.signal })) parts.push(p);
        ac.abort(new CancelledError('user'));
        await new Promise((r) => setTimeout(r, 20));
        assert.equal(parts.at(-1)?.type, 'finish');
        assert.deepEqual(unhandled, []);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });

    for (const kind of Object.keys(FAILURE_CODES) as FailureKind[]) {
      const code = FAILURE_CODES[kind];
      it(`a failure (${kind}) is a LeashError ${code}, thrown instead of a finish part`, async (t) => {
        const failing = m.failures[kind];
        if (failing === undefined) {
          t.skip(`${name} cannot meet ${kind}`);
          return;
        }
        const parts: ModelStreamPart[] = [];
        let err: unknown;
        try {
          for await (const p of failing().stream({ messages })) parts.push(p);
        } catch (e) {
          err = e;
        }
        assert.ok(LeashError.is(err, code), `expected ${code}, got ${String(err)}`);
        assert.ok(!parts.some((p) => p.type === 'finish'), 'no finish part');
        if (AFTER_TEXT.has(kind)) assert.ok(parts.length > 0, 'the deltas before the failure arrive');
      });
    }
  });
}
