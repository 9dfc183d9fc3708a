// /v1/responses through the official `openai` client: background + retrieve +
// cancel (idempotent, 400 once completed), chains over threads in which a
// cancelled turn stays in the model's context, streams and exact resumption.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI, { APIError, BadRequestError, NotFoundError } from 'openai';
import type { Response, ResponseStreamEvent } from 'openai/resources/responses/responses';
import { CUT_SHORT_NOTE, NO_ANSWER_NOTE } from '../src/threads/context.ts';
import { startOpenAiSetup, type OpenAiSetup } from './helpers/openai.ts';
import { api, eventually, type TestServer } from './helpers/server.ts';

const SLOW = 'simulated?tps=40&tokens=100000';
const ECHO = 'simulated:echo?tps=0';
const FAST = (tokens: number): string => `simulated?tps=0&tokens=${tokens}`;

type AnyEvent = ResponseStreamEvent | { type: 'response.cancelled'; sequence_number: number; response: Response };

async function collect(stream: AsyncIterable<ResponseStreamEvent>): Promise<AnyEvent[]> {
  const out: AnyEvent[] = [];
  for await (const e of stream) out.push(e);
  return out;
}

function assertContiguous(events: AnyEvent[], from: number): void {
  events.forEach((e, i) => assert.equal(e.sequence_number, from + i, `event ${i} (${e.type})`));
}

const deltasOf = (events: AnyEvent[]): string =>
  events.map((e) => (e.type === 'response.output_text.delta' ? e.delta : '')).join('');

describe('openai client: responses', () => {
  let s: TestServer;
  let client: OpenAI;
  let bob: OpenAI;
  let setup: OpenAiSetup;

  before(async () => {
    setup = await startOpenAiSetup({ behaviour: 'error', status: 400, errorMessage: 'upstream says no' });
    ({ s, client } = setup);
    bob = setup.clientFor('k-bob');
  });
  after(() => setup.close());

  const taskOf = async (id: string) => (await api(s.url, 'GET', `/api/tasks/${id}`, { key: 'k-alice' })).body;

  it('creates, waits and returns the completed response; retrieve answers the same', async () => {
    const r = await client.responses.create({ model: FAST(9), input: 'Tell me something.' });
    assert.equal(r.object, 'response');
    assert.equal(r.status, 'completed');
    assert.equal(r.model, FAST(9));
    assert.equal(r.previous_response_id, null);
    assert.equal(r.output.length, 1);
    const item = r.output[0]!;
    assert.equal(item.type, 'message');
    assert.ok(item.type === 'message' && item.status === 'completed' && item.role === 'assistant');
    assert.equal(r.output_text.trim().split(/\s+/).length, 9);
    assert.equal(r.usage?.output_tokens, 9);
    assert.equal(r.usage?.input_tokens, 3);
    assert.equal(r.usage?.total_tokens, 12);
    assert.equal(typeof r.completed_at, 'number');
    // The response is the chat task of a thread.
    const t = await taskOf(r.id);
    assert.equal(t.type, 'chat');
    assert.equal(t.status, 'completed');
    assert.match(t.thread_id, /^thread_/);
    const again = await client.responses.retrieve(r.id);
    assert.equal(again.output_text, r.output_text);
    assert.deepEqual({ ...again, background: null }, { ...r, background: null });
  });

  it('background: answers at once, retrieve shows progress, cancel stops it; cancel again is idempotent', async () => {
    const r = await client.responses.create({ model: SLOW, input: 'Write forever.', background: true });
    assert.ok(['queued', 'in_progress'].includes(r.status!), r.status);
    assert.equal(r.background, true);
    const partial = await eventually(async () => {
      const x = await client.responses.retrieve(r.id);
      return x.status === 'in_progress' && x.output_text.length > 20 ? x : null;
    });
    assert.equal(partial.output[0]?.type === 'message' && partial.output[0].status, 'in_progress');

    const c = await client.responses.cancel(r.id);
    assert.equal(c.status, 'cancelled');
    assert.equal(c.id, r.id);
    const t = await taskOf(r.id);
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.reason, 'user');
    const item = c.output[0];
    assert.ok(item?.type === 'message');
    assert.equal(item.status, 'incomplete');
    const text = item.content[0]?.type === 'output_text' ? item.content[0].text : '';
    assert.ok(text.length >= partial.output_text.length, 'the partial text is kept');
    assert.equal(text, t.output_text);
    assert.ok((c.usage?.output_tokens ?? 0) > 0, 'the cut-short turn is metered');

    const c2 = await client.responses.cancel(r.id);
    assert.equal(c2.status, 'cancelled');
    assert.deepEqual(c2, c);
    assert.equal((await client.responses.retrieve(r.id)).status, 'cancelled');
  });

  it("cancel of a completed response is a 400 with OpenAI's message", async () => {
    const r = await client.responses.create({ model: FAST(3), input: 'Quick.' });
    assert.equal(r.status, 'completed');
    await assert.rejects(client.responses.cancel(r.id), (e: unknown) => {
      assert.ok(e instanceof BadRequestError);
      assert.equal((e.error as { message: string }).message, 'Cannot cancel a completed response.');
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
    assert.equal((await client.responses.retrieve(r.id)).status, 'completed');
  });

  it('previous_response_id after a cancelled response: the model sees the cancelled turn', async () => {
    const first = await client.responses.create({
      model: SLOW,
      input: 'In what year was Brazil founded?',
      background: true,
    });
    await eventually(async () => (await client.responses.retrieve(first.id)).output_text.length > 10);
    await client.responses.cancel(first.id);
    const partial = (await taskOf(first.id)).output_text as string;
    assert.ok(partial.length > 10);

    const second = await client.responses.create({
      model: ECHO,
      input: 'What did I just ask?',
      previous_response_id: first.id,
    });
    assert.equal(second.status, 'completed');
    assert.equal(second.previous_response_id, first.id);
    const transcript = second.output_text;
    assert.match(transcript, /\[user\] In what year was Brazil founded\?/);
    assert.ok(transcript.includes(partial.trim()), 'the partial answer is in the context');
    assert.ok(transcript.includes(CUT_SHORT_NOTE), 'marked as cut short');
    assert.match(transcript, /\[user\] What did I just ask\?$/);
    // Same thread.
    assert.equal((await taskOf(second.id)).thread_id, (await taskOf(first.id)).thread_id);
  });

  it('a response cancelled while queued is in the next context as unanswered', async () => {
    // The follow-up queues behind a long run in the same thread, then is cancelled before it starts.
    const running = await client.responses.create({ model: SLOW, input: 'Long one.', background: true });
    const queued = await client.responses.create({
      model: SLOW,
      input: 'Never answered?',
      background: true,
      previous_response_id: running.id,
    });
    assert.equal(queued.status, 'queued');
    const cq = await client.responses.cancel(queued.id);
    assert.equal(cq.status, 'cancelled');
    assert.deepEqual(cq.output, []);
    await client.responses.cancel(running.id);
    const next = await client.responses.create({ model: ECHO, input: 'And now?', previous_response_id: queued.id });
    assert.match(next.output_text, /\[user\] Never answered\?/);
    assert.ok(next.output_text.includes(NO_ANSWER_NOTE));
  });

  it('two continuations of one response fork: each sees only its own branch', async () => {
    const a = await client.responses.create({ model: ECHO, input: 'root question' });
    const b = await client.responses.create({ model: ECHO, input: 'branch one', previous_response_id: a.id });
    const c = await client.responses.create({ model: ECHO, input: 'branch two', previous_response_id: a.id });
    assert.match(b.output_text, /root question[\s\S]*branch one/);
    assert.match(c.output_text, /root question[\s\S]*branch two/);
    assert.ok(!c.output_text.includes('branch one'), c.output_text);
    assert.equal(c.previous_response_id, a.id);
    assert.equal(b.previous_response_id, a.id);
    assert.notEqual((await taskOf(c.id)).thread_id, (await taskOf(a.id)).thread_id);
    // The branch continues linearly from c.
    const d = await client.responses.create({ model: ECHO, input: 'after two', previous_response_id: c.id });
    assert.equal((await taskOf(d.id)).thread_id, (await taskOf(c.id)).thread_id);
    assert.ok(!d.output_text.includes('branch one'));
    assert.match(d.output_text, /branch two[\s\S]*after two/);
  });

  it('input as a message list, with instructions', async () => {
    const r = await client.responses.create({
      model: ECHO,
      instructions: 'Answer in French.',
      input: [
        { role: 'developer', content: 'Be terse.' },
        { role: 'user', content: 'Hi' },
        // An earlier output item fed back, as clients that keep their own history do.
        {
          id: 'msg_earlier',
          type: 'message',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'Salut', annotations: [] }],
        },
        { role: 'user', content: [{ type: 'input_text', text: 'How are you?' }] },
      ],
    });
    assert.equal(
      r.output_text,
      [
        '[system] Answer in French.',
        '[system] Be terse.',
        '[user] Hi',
        '[assistant] Salut',
        '[user] How are you?',
      ].join('\n'),
    );
    assert.equal(r.instructions, 'Answer in French.');
  });

  it('stream: Responses events numbered from 0, ending with response.completed; a replay is identical', async () => {
    const stream = await client.responses.create({ model: FAST(6), input: 'Stream please.', stream: true });
    const events = await collect(stream);
    assertContiguous(events, 0);
    const types = events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 5), [
      'response.created',
      'response.queued',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
    ]);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta');
    assert.ok(deltas.length >= 1, 'text arrives as deltas (those of one tick merged)');
    const streamed = deltas.map((e) => (e as { delta: string }).delta).join('');
    assert.equal(streamed.trim().split(/\s+/).length, 6);
    assert.deepEqual(types.slice(-4), [
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const done = events.at(-1)!;
    assert.ok(done.type === 'response.completed');
    assert.equal(done.response.status, 'completed');
    const text = deltasOf(events);
    const textDone = events.find((e) => e.type === 'response.output_text.done');
    assert.ok(textDone?.type === 'response.output_text.done');
    assert.equal(textDone.text, text);
    const final = await client.responses.retrieve(done.response.id);
    assert.equal(final.output_text, text);

    const replay = await collect(await client.responses.retrieve(done.response.id, { stream: true }));
    assert.deepEqual(
      replay.map((e) => [e.sequence_number, e.type]),
      events.map((e) => [e.sequence_number, e.type]),
    );
  });

  it('resumes a background stream with starting_after: no duplicates, no gaps', async () => {
    const stream = await client.responses.create({
      model: 'simulated?tps=150&tokens=60',
      input: 'Resume me.',
      background: true,
      stream: true,
    });
    const head: AnyEvent[] = [];
    for await (const e of stream) {
      head.push(e);
      if (e.type === 'response.output_text.delta' && head.length >= 10) stream.controller.abort();
    }
    const id = head[0]?.type === 'response.created' ? head[0].response.id : '';
    assert.match(id, /^task_/);
    assertContiguous(head, 0);
    const last = head.at(-1)!.sequence_number;
    // The background work goes on without its first client.
    const tail = await collect(await client.responses.retrieve(id, { stream: true, starting_after: last }));
    assert.ok(tail.length > 0);
    assertContiguous(tail, last + 1);
    assert.equal(tail.at(-1)?.type, 'response.completed');
    const final = await client.responses.retrieve(id);
    assert.equal(final.status, 'completed');
    assert.equal(deltasOf([...head, ...tail]), final.output_text);
    assert.equal(final.output_text.trim().split(/\s+/).length, 60);
  });

  it('a cancelled response streams to its end: item incomplete, then response.cancelled', async () => {
    const r = await client.responses.create({ model: SLOW, input: 'Stop me.', background: true });
    const stream = await client.responses.retrieve(r.id, { stream: true });
    let cancelled = false;
    const events: AnyEvent[] = [];
    for await (const e of stream) {
      events.push(e);
      if (!cancelled && e.type === 'response.output_text.delta' && events.length > 8) {
        cancelled = true;
        await client.responses.cancel(r.id);
      }
    }
    assertContiguous(events, 0);
    const types = events.map((e) => e.type as string);
    assert.equal(types.at(-1), 'response.cancelled');
    const end = events.at(-1) as { response: Response };
    assert.equal(end.response.status, 'cancelled');
    const itemDone = events.find((e) => e.type === 'response.output_item.done');
    assert.ok(itemDone?.type === 'response.output_item.done' && itemDone.item.type === 'message');
    assert.equal(itemDone.item.status, 'incomplete');
    assert.equal(deltasOf(events), (await taskOf(r.id)).output_text);
  });

  it('a dropped non-background stream cancels the response (reason disconnect)', async () => {
    const stream = await client.responses.create({ model: SLOW, input: 'Drop me.', stream: true });
    let id = '';
    for await (const e of stream) {
      if (e.type === 'response.created') id = e.response.id;
      if (e.type === 'response.output_text.delta') stream.controller.abort();
    }
    const t = await eventually(async () => {
      const x = await taskOf(id);
      return x.status === 'cancelled' ? x : null;
    });
    assert.equal(t.cancel.reason, 'disconnect');
    assert.equal((await client.responses.retrieve(id)).status, 'cancelled');
  });

  it('a failed model call is a failed response with the error', async () => {
    const r = await client.responses.create({ model: 'openai:gpt-fake', input: 'Fail.' });
    assert.equal(r.status, 'failed');
    assert.equal(r.error?.code as string, 'upstream_error');
    assert.match(r.error?.message ?? '', /upstream says no/);
    const events = await collect(
      await client.responses.create({ model: 'openai:gpt-fake', input: 'Fail.', stream: true }),
    );
    assert.equal(events.at(-1)?.type, 'response.failed');
    assertContiguous(events, 0);
  });

  it('delete: an ended response goes away; an active one answers 409', async () => {
    const r = await client.responses.create({ model: FAST(2), input: 'Delete me.' });
    await client.responses.delete(r.id);
    await assert.rejects(client.responses.retrieve(r.id), NotFoundError);
    const live = await client.responses.create({ model: SLOW, input: 'Busy.', background: true });
    await assert.rejects(client.responses.delete(live.id), (e: unknown) => e instanceof APIError && e.status === 409);
    await client.responses.cancel(live.id);
  });

  it("another owner's response is not found, for every verb and as previous_response_id", async () => {
    const r = await client.responses.create({ model: FAST(2), input: 'Private.' });
    await assert.rejects(bob.responses.retrieve(r.id), NotFoundError);
    await assert.rejects(bob.responses.cancel(r.id), NotFoundError);
    await assert.rejects(bob.responses.delete(r.id), NotFoundError);
    await assert.rejects(
      bob.responses.create({ model: ECHO, input: 'leak?', previous_response_id: r.id }),
      (e: unknown) => e instanceof BadRequestError && e.param === 'previous_response_id',
    );
    await assert.rejects(client.responses.retrieve('task_doesnotexist'), NotFoundError);
    // A task that is not a chat turn is not a response.
    const gen = await api(s.url, 'POST', '/api/tasks', {
      key: 'k-alice',
      body: { type: 'generate', input: { prompt: 'x', model: FAST(1) } },
    });
    await assert.rejects(client.responses.retrieve(gen.body.id), NotFoundError);
  });

  it('bad requests → 400 / 404 in OpenAI shape, nothing created', async () => {
    const bad = async (body: unknown) => {
      try {
        await client.responses.create(body as never);
      } catch (e) {
        return e;
      }
      assert.fail('the request succeeded');
    };
    const noInput = await bad({ model: FAST(1) });
    assert.ok(noInput instanceof BadRequestError);
    assert.equal(noInput.param, 'input');
    const noModel = await bad({ input: 'x' });
    assert.ok(noModel instanceof BadRequestError);
    assert.equal(noModel.param, 'model');
    const notUserLast = await bad({ model: ECHO, input: [{ role: 'assistant', content: 'x' }] });
    assert.ok(notUserLast instanceof BadRequestError);
    assert.equal(notUserLast.param, 'input');
    const badPart = await bad({
      model: ECHO,
      input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }],
    });
    assert.ok(badPart instanceof BadRequestError);
    assert.match(badPart.param ?? '', /^input\[0\]\.content/);
    const limit = await bad({ model: ECHO, input: 'x', max_output_tokens: 0 });
    assert.ok(limit instanceof BadRequestError);
    assert.equal(limit.param, 'max_output_tokens');
    const capped = await client.responses.create({
      model: 'simulated?tps=0&tokens=50',
      input: 'x',
      max_output_tokens: 5,
    });
    assert.equal(capped.usage?.output_tokens, 5, 'max_output_tokens reaches the model');
    const unknown = await bad({ model: 'gpt-nope', input: 'x' });
    assert.ok(unknown instanceof NotFoundError);
    assert.equal(unknown.code, 'model_not_found');
    const prev = await bad({ model: ECHO, input: 'x', previous_response_id: 'task_nope' });
    assert.ok(prev instanceof BadRequestError);
    assert.equal(prev.code, 'previous_response_not_found');
    const q = await api(s.url, 'GET', '/v1/responses/task_x?starting_after=abc', { key: 'k-alice' });
    assert.equal(q.status, 400);
    assert.equal(q.body.error.param, 'starting_after');
  });
});
