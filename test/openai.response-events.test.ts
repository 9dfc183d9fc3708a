// /v1/responses numbers its stream events (`sequence_number`) as a function of the task's
// log replayed from the start, and `starting_after=N` drops those up to N. After a crash
// the log skips the seqs the lost node streamed but never stored: the numbering must
// skip with it, or a number a client saw before the crash (a lost delta) would name
// another event after it (the failure) — and a client resuming after it would miss it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ResponseEventTranslator } from '../src/server/openai/response-events.ts';
import type { ResponseShape } from '../src/server/openai/shapes.ts';
import type { TaskEvent } from '../src/core/types.ts';
import { SEQ_AHEAD } from '../src/store/store.ts';

const info = {
  id: 'task_1',
  created_at: 0,
  model: 'simulated',
  instructions: null,
  previous_response_id: null,
  item_id: 'msg_1',
  background: false,
};
const final = async (): Promise<ResponseShape> => ({ id: 'task_1' }) as unknown as ResponseShape;

const ev = (seq: number, type: string, data: object = {}): TaskEvent =>
  ({ task_id: 'task_1', seq, type, data, created_at: '' }) as TaskEvent;

async function numbered(log: TaskEvent[]): Promise<Map<number, string>> {
  const tr = new ResponseEventTranslator(info, final);
  const out = new Map<number, string>();
  for (const e of log) for (const r of await tr.translate(e)) out.set(r.sequence_number, JSON.stringify(r));
  return out;
}

describe('Responses stream numbering across a crash', () => {
  it('a sequence_number seen before the crash never names another event after it', async () => {
    const head = [ev(1, 'task.queued'), ev(2, 'task.started'), ev(3, 'output.delta', { text: 'a' })];
    // Before the crash, readers were served deltas 4…9 that never reached the store.
    const seen = await numbered([...head, ...[4, 5, 6, 7, 8, 9].map((s) => ev(s, 'output.delta', { text: `d${s}` }))]);
    // After it: the stored head, then recovery's task.failed above every seq handed out.
    const failed = ev(3 + SEQ_AHEAD + 1, 'task.failed', {
      error: { code: 'node_lost', message: 'lost' },
      last_durable_seq: 3,
    });
    const afterCrash = await numbered([...head, failed]);
    const maxSeen = Math.max(...seen.keys());
    for (const [n, e] of afterCrash) {
      if (n <= maxSeen) assert.equal(e, seen.get(n), `sequence_number ${n} names what it named before`);
    }
    const endNumbers = [...afterCrash.keys()].filter((n) => n > maxSeen);
    assert.ok(
      [...afterCrash.values()].at(-1)!.includes('response.failed') && endNumbers.length > 0,
      'a client resuming after the last number it saw still gets response.failed',
    );
  });
});
