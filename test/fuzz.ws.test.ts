// Property-based fuzzing of the WebSocket protocol (SPEC §3) with fast-check:
// FUZZ_WS_RUNS (default 3000) generated frames on one socket — text that is not
// JSON, JSON that is not an object, binary frames, unknown types, known types with
// junk fields, and valid frames naming real, missing and another owner's ids.
// Each frame is followed by a ping, so the replies to frame i are the frames that
// arrive before pong i (frames of one socket are handled in order).
// The promise: the socket stays open, every malformed frame gets exactly one
// `error` frame with `invalid_frame`, every error carries a code and a message and
// is never `internal_error`, nothing of another owner's task comes back, and the
// server is healthy with its registries back to zero afterwards.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import WebSocket from 'ws';
import { api, eventually } from './helpers/server.ts';
import { assertRegistriesDrain, startLoggedServer, type LoggedServer } from './reliability.helpers.ts';

const RUNS = Number(process.env.FUZZ_WS_RUNS ?? 3000);
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
process.env.LEASH_SIM_TPS = '0';

const KEYS = new Map([
  ['ws-key-alice', 'alice'],
  ['ws-key-bob', 'bob'],
]);
const TYPES = ['run', 'cancel', 'interrupt', 'subscribe', 'unsubscribe', 'ping'];
const FIELDS = [
  'type',
  'request_id',
  'task_id',
  'thread_id',
  'task',
  'content',
  'reason',
  'after',
  'multitask',
  'model',
  'system',
  'deadline_ms',
  'on_disconnect',
  'input',
  'priority',
  '__proto__',
];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frames are whatever JSON the server sent
type Frame = any;

/** Fills `{alice_task}` etc. with the real ids when the frame is sent. */
type Ids = Record<'alice_task' | 'alice_thread' | 'bob_task' | 'bob_thread', string>;
const ID_NAMES = ['alice_task', 'alice_thread', 'bob_task', 'bob_thread'] as const;

const idRef: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...ID_NAMES).map((n) => `{${n}}`) },
  { weight: 1, arbitrary: fc.constantFrom('task_missing', 'thread_missing', '', 'x'.repeat(300)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
);
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    true,
    false,
    0,
    -1,
    1.5,
    2 ** 53,
    '',
    'user',
    'interrupted',
    'cancel',
    'continue',
    'enqueue',
    'reject',
    'generate',
    'chat',
  ),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  idRef,
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.dictionary(fc.constantFrom(...FIELDS), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
);

type Gen =
  { kind: 'malformed'; data: string | Buffer; binary: boolean } | { kind: 'frame'; frame: Record<string, unknown> };

const malformed: fc.Arbitrary<Gen> = fc.oneof(
  fc
    .string({ maxLength: 40 })
    .filter((s) => !isJsonObject(s))
    .map((data): Gen => ({ kind: 'malformed', data, binary: false })),
  fc
    .oneof(fc.jsonValue(), fc.constant(null))
    .filter((v) => v === null || typeof v !== 'object' || Array.isArray(v))
    .map((v): Gen => ({ kind: 'malformed', data: JSON.stringify(v), binary: false })),
  fc.uint8Array({ maxLength: 32 }).map((a): Gen => ({ kind: 'malformed', data: Buffer.from(a), binary: true })),
  // Objects without a known type.
  fc
    .record(
      {
        type: fc.oneof(
          fc.string({ maxLength: 10 }).filter((t) => !TYPES.includes(t)),
          fc.integer(),
          fc.constant(null),
        ),
        request_id: fc.string({ maxLength: 5 }),
      },
      { requiredKeys: [] },
    )
    .map((f): Gen => ({ kind: 'malformed', data: JSON.stringify(f), binary: false })),
  fc
    .constantFrom('{', '{"type":"run"', '\u0000', '{"type":"ping"}}', '[{"type":"ping"}]')
    .map((data): Gen => ({ kind: 'malformed', data, binary: false })),
);

const nearValid: fc.Arbitrary<Gen> = fc
  .tuple(
    fc.constantFrom(...TYPES),
    fc.dictionary(fc.constantFrom(...FIELDS.filter((f) => f !== 'type')), junk, { maxKeys: 4 }),
  )
  .map(([type, rest]): Gen => ({ kind: 'frame', frame: { ...rest, type } }));

const valid: fc.Arbitrary<Gen> = fc
  .oneof(
    fc.record({
      type: fc.constant('run'),
      request_id: fc.string({ minLength: 1, maxLength: 8 }),
      task: fc.record({
        type: fc.constant('generate'),
        input: fc.record({ prompt: fc.string({ minLength: 1, maxLength: 10 }) }),
      }),
    }),
    fc.record({
      type: fc.constant('run'),
      request_id: fc.nat(),
      thread_id: idRef,
      content: fc.string({ minLength: 1, maxLength: 10 }),
      multitask: fc.constantFrom('interrupt', 'enqueue', 'reject', 'rollback'),
    }),
    fc.record({
      type: fc.constantFrom('cancel', 'subscribe', 'unsubscribe'),
      request_id: fc.string({ minLength: 1, maxLength: 8 }),
      task_id: idRef,
    }),
    fc.record({
      type: fc.constant('interrupt'),
      request_id: fc.string({ minLength: 1, maxLength: 8 }),
      thread_id: idRef,
    }),
    fc.record({ type: fc.constant('subscribe'), task_id: idRef, after: fc.nat({ max: 20 }) }),
  )
  .map((frame): Gen => ({ kind: 'frame', frame }));

const genArb: fc.Arbitrary<Gen> = fc.oneof(
  { weight: 3, arbitrary: malformed },
  { weight: 4, arbitrary: nearValid },
  { weight: 2, arbitrary: valid },
);

function isJsonObject(s: string): boolean {
  try {
    const v: unknown = JSON.parse(s);
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  } catch {
    return false;
  }
}

function fill(frame: Record<string, unknown>, ids: Ids): string {
  return JSON.stringify(frame).replace(
    /\{(alice_task|alice_thread|bob_task|bob_thread)\}/g,
    (_, n: keyof Ids) => ids[n],
  );
}

describe('WebSocket fuzzing', () => {
  let s: LoggedServer;
  let ws: WebSocket;
  const frames: Frame[] = [];
  const waiters: Array<() => void> = [];
  let closedWith: number | null = null;
  const ids = {} as Ids;
  const counts = { malformed: 0, frame: 0, replies: new Map<string, number>() };

  before(async () => {
    s = await startLoggedServer({
      apiKeys: KEYS,
      model: 'simulated?tps=0&tokens=5',
      level: 'warn',
      runtime: { maxRunningPerOwner: 8 },
    });
    for (const [owner, key] of [
      ['alice', 'ws-key-alice'],
      ['bob', 'ws-key-bob'],
    ] as const) {
      const t = await api(s.url, 'POST', '/api/tasks', { key, body: { type: 'generate', input: { prompt: owner } } });
      const th = await api(s.url, 'POST', '/api/threads', { key, body: {} });
      ids[`${owner}_task`] = t.body.id;
      ids[`${owner}_thread`] = th.body.id;
      await eventually(async () => (await s.runtime.get(t.body.id, owner))?.status === 'completed');
    }
    ws = new WebSocket(`${s.url.replace(/^http/, 'ws')}/api/ws`, { headers: { authorization: 'Bearer ws-key-alice' } });
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false);
      frames.push(JSON.parse(String(data)));
      for (const w of waiters.splice(0)) w();
    });
    ws.on('close', (code) => {
      closedWith = code;
      for (const w of waiters.splice(0)) w();
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
  });
  after(async () => {
    console.log(
      `# fuzz.ws: ${counts.malformed} malformed + ${counts.frame} other frames; replies ${[...counts.replies].map(([k, v]) => `${k}:${v}`).join(' ')}`,
    );
    if (ws.readyState === WebSocket.OPEN) ws.close();
    await s.close();
  });

  async function waitFor(pred: (f: Frame) => boolean, from: number): Promise<number> {
    const end = Date.now() + 15_000;
    for (;;) {
      const i = frames.findIndex((f, j) => j >= from && pred(f));
      if (i >= 0) return i;
      if (closedWith !== null) throw new Error(`the server closed the socket (${closedWith})`);
      if (Date.now() > end) throw new Error('no pong within 15 s');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  let seq = 0;
  /** Sends one generated frame and a ping; returns the replies to the frame (events of tasks excluded). */
  async function exchange(g: Gen, with_: Ids = ids): Promise<Frame[]> {
    const from = frames.length;
    const pingId = `fz-${seq++}`;
    if (g.kind === 'malformed') ws.send(g.data, { binary: g.binary });
    else ws.send(fill(g.frame, with_));
    ws.send(JSON.stringify({ type: 'ping', request_id: pingId }));
    const at = await waitFor((f) => f.type === 'pong' && f.request_id === pingId, from);
    return frames
      .slice(from, at)
      .filter((f) => f.type !== 'event' && !(f.type === 'pong' && String(f.request_id).startsWith('fz-')));
  }

  it(`${RUNS} generated frames: the socket stays open, malformed frames get one invalid_frame error each`, async () => {
    await fc.assert(
      fc.asyncProperty(genArb, async (g) => {
        const replies = await exchange(g);
        counts[g.kind]++;
        for (const r of replies)
          counts.replies.set(
            r.type === 'error' ? `error:${r.error?.code}` : r.type,
            (counts.replies.get(r.type === 'error' ? `error:${r.error?.code}` : r.type) ?? 0) + 1,
          );
        const what =
          g.kind === 'malformed' ? JSON.stringify(String(g.data)).slice(0, 120) : fill(g.frame, ids).slice(0, 200);
        for (const r of replies) {
          assert.ok(
            ['ack', 'cancel_ack', 'error', 'pong'].includes(r.type),
            `${what}: unexpected reply ${JSON.stringify(r)}`,
          );
          if (r.type === 'error') {
            assert.equal(typeof r.error?.code, 'string', `${what}: error without a code`);
            assert.equal(typeof r.error?.message, 'string', `${what}: error without a message`);
            assert.notEqual(r.error.code, 'internal_error', `${what}: ${JSON.stringify(r)}`);
          }
        }
        if (g.kind === 'malformed') {
          assert.equal(replies.length, 1, `${what}: ${JSON.stringify(replies)}`);
          assert.equal(replies[0].type, 'error');
          assert.equal(replies[0].error.code, 'invalid_frame');
        }
        // Naming bob's task or thread must read exactly like naming one that does not exist.
        if (g.kind === 'frame' && /\{bob_(task|thread)\}/.test(JSON.stringify(g.frame))) {
          const missing = { ...ids, bob_task: 'task_zzzzzzzzzzzzzzzzzzzz', bob_thread: 'thread_zzzzzzzzzzzzzzzzzzzz' };
          const again = await exchange(g, missing);
          const norm = (rs: Frame[], m: Ids): string =>
            JSON.stringify(rs).replaceAll(m.bob_task, '<id>').replaceAll(m.bob_thread, '<id>');
          assert.equal(
            norm(replies, ids),
            norm(again, missing),
            `${what}: bob's id answered differently from a missing one`,
          );
        }
      }),
      { numRuns: RUNS, ...(SEED !== undefined && { seed: SEED }) },
    );
    assert.equal(closedWith, null, 'the socket is still open');
  });

  it("no event of bob's task came on alice's socket", () => {
    assert.deepEqual(
      frames.filter((f) => f.type === 'event' && f.task_id === ids.bob_task),
      [],
    );
    assert.ok(
      frames.some((f) => f.type === 'event' && f.task_id === ids.alice_task),
      "alice's own task did stream",
    );
  });

  it('protocol-level faults close only the faulty socket: invalid UTF-8 text (1007), an oversized frame (1009)', async () => {
    const open = async (): Promise<{ ws: WebSocket; closed: Promise<number> }> => {
      const w = new WebSocket(`${s.url.replace(/^http/, 'ws')}/api/ws`, {
        headers: { authorization: 'Bearer ws-key-alice' },
      });
      const closed = new Promise<number>((resolve) => w.on('close', (code) => resolve(code)));
      w.on('error', () => {});
      await new Promise<void>((resolve, reject) => (w.once('open', () => resolve()), w.once('error', reject)));
      return { ws: w, closed };
    };
    const a = await open();
    a.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    assert.equal(await a.closed, 1007);
    const b = await open();
    b.ws.send('x'.repeat(1024 * 1024 + 10));
    assert.equal(await b.closed, 1009);
    // The fuzzed socket was not affected.
    assert.equal(closedWith, null);
    const at = frames.length;
    ws.send(JSON.stringify({ type: 'ping', request_id: 'still-there' }));
    await waitFor((f) => f.type === 'pong' && f.request_id === 'still-there', at);
  });

  it('afterwards: healthy, registries back to zero, nothing logged as an unexpected error', async () => {
    ws.close();
    await eventually(async () => closedWith !== null);
    // Let the runs the fuzz started finish (they are fast), then nothing may be left over.
    await eventually(async () => {
      const c = await s.runtime.countByStatus();
      return c.queued + c.running + c.cancelling === 0;
    }, 30_000);
    assert.equal((await api(s.url, 'GET', '/healthz')).status, 200);
    await assertRegistriesDrain(s.runtime);
    assert.deepEqual(
      s.logsAtLeast(50).map((e) => e.msg),
      [],
    );
  });
});
