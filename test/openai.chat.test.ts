// /v1/models and /v1/chat/completions through the official `openai` client: the
// happy paths, a dropped stream cancelling the task (and closing the upstream
// socket), errors in OpenAI's shape.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI, { APIError, AuthenticationError, BadRequestError, NotFoundError } from 'openai';
import type { ChatCompletion, ChatCompletionChunk } from 'openai/resources/chat/completions';
import { echoTranscript } from '../src/models/simulated.ts';
import { chatChunk, chatCompletion, usageChunk } from '../src/server/openai/shapes.ts';
import type { FakeUpstream } from './helpers/fake-upstream.ts';
import { startOpenAiSetup, type OpenAiSetup } from './helpers/openai.ts';
import { api, eventually, type TestServer } from './helpers/server.ts';

const FAST = (tokens: number): string => `simulated?tps=0&tokens=${tokens}`;
const SLOW = 'simulated?tps=40&tokens=100000';
const ECHO = 'simulated:echo?tps=0';

// Compile-time: leash's shapes are assignable to the official types.
const head = { id: 'task_x', created: 0, model: 'm' };
const usage = { input_tokens: 2, output_tokens: 3 };
const typedCompletion: ChatCompletion = chatCompletion(head, 'hi', 'stop', usage);
const typedChunks: ChatCompletionChunk[] = [chatChunk(head, { content: 'hi' }, null, true), usageChunk(head, usage)];

describe('openai client: models and chat completions', () => {
  let s: TestServer;
  let upstream: FakeUpstream;
  let client: OpenAI;
  let setup: OpenAiSetup;

  before(async () => {
    setup = await startOpenAiSetup({
      behaviour: 'stream',
      intervalMs: 30,
      tokens: Array.from({ length: 300 }, (_, i) => ` t${i}`),
    });
    ({ s, upstream, client } = setup);
  });
  after(() => setup.close());

  const taskOf = async (id: string) => (await api(s.url, 'GET', `/api/tasks/${id}`, { key: 'k-alice' })).body;
  const waitEnded = (id: string) =>
    eventually(async () => {
      const t = await taskOf(id);
      return ['completed', 'failed', 'cancelled'].includes(t.status) ? t : null;
    });
  /** The newest completion task of alice. */
  const newestCompletion = async () => {
    const r = await api(s.url, 'GET', '/api/tasks?type=completion&limit=1', { key: 'k-alice' });
    return r.body.data[0] as { id: string; status: string } | undefined;
  };

  it('the shapes type-check against the openai package', () => {
    assert.equal(typedCompletion.choices[0]?.message.content, 'hi');
    assert.equal(typedChunks[1]?.usage?.total_tokens, 5);
  });

  it('lists the registry models, the default among them, and retrieves one', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.ok(ids.includes('simulated') && ids.includes('simulated:echo'), ids.join(','));
    for (const m of page.data) {
      assert.equal(m.object, 'model');
      assert.equal(typeof m.created, 'number');
      assert.equal(typeof m.owned_by, 'string');
    }
    const echo = await client.models.retrieve('simulated:echo');
    assert.deepEqual([echo.id, echo.object, echo.owned_by], ['simulated:echo', 'model', 'simulated']);
    // Any spec the registry resolves is a model, options included.
    assert.equal((await client.models.retrieve('simulated?tps=5')).id, 'simulated?tps=5');
    await assert.rejects(client.models.retrieve('no-such-model'), (e: unknown) => {
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
  });

  it('answers a non-streamed completion with usage, as a completion task', async () => {
    const { data: r, response } = await client.chat.completions
      .create({ model: FAST(12), messages: [{ role: 'user', content: 'Say something.' }] })
      .withResponse();
    assert.equal(response.headers.get('x-task-id'), r.id);
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, FAST(12));
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0]?.finish_reason, 'stop');
    assert.equal(r.choices[0]?.message.role, 'assistant');
    const text = r.choices[0]?.message.content ?? '';
    assert.equal(text.trim().split(/\s+/).length, 12);
    assert.deepEqual(r.usage, { prompt_tokens: 2, completion_tokens: 12, total_tokens: 14 });
    // The completion is a task: its id, visible and metered like any other.
    const t = await taskOf(r.id);
    assert.equal(t.type, 'completion');
    assert.equal(t.status, 'completed');
    assert.equal(t.output_text, text);
  });

  it('passes the messages through: developer → system, text parts joined', async () => {
    const r = await client.chat.completions.create({
      model: ECHO,
      messages: [
        { role: 'developer', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Hello ' },
            { type: 'text', text: 'there' },
          ],
        },
        { role: 'assistant', content: 'Hi.' },
        { role: 'user', content: 'Again?' },
      ],
    });
    assert.equal(
      r.choices[0]?.message.content,
      echoTranscript([
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello there' },
        { role: 'assistant', content: 'Hi.' },
        { role: 'user', content: 'Again?' },
      ]),
    );
  });

  it('honours max_completion_tokens (finish_reason length)', async () => {
    const r = await client.chat.completions.create({
      model: FAST(50),
      max_completion_tokens: 5,
      messages: [{ role: 'user', content: 'Long please.' }],
    });
    assert.equal(r.choices[0]?.finish_reason, 'length');
    assert.equal(r.usage?.completion_tokens, 5);
  });

  it('streams chunks: role first, the deltas, finish_reason, the usage chunk, and the same text', async () => {
    const messages = [{ role: 'user' as const, content: 'Stream it.' }];
    const whole = await client.chat.completions.create({ model: FAST(20), messages });
    const stream = await client.chat.completions.create({
      model: FAST(20),
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    // role chunk + ≥ 1 delta (deltas of one tick are merged) + finish + usage
    assert.ok(chunks.length >= 4, `${chunks.length} chunks`);
    const ids = new Set(chunks.map((c) => c.id));
    assert.equal(ids.size, 1);
    assert.equal(chunks[0]?.choices[0]?.delta.role, 'assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, whole.choices[0]?.message.content);
    const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(finishes.length, 1);
    assert.equal(finishes[0]?.choices[0]?.finish_reason, 'stop');
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, { prompt_tokens: 2, completion_tokens: 20, total_tokens: 22 });
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
    assert.equal((await taskOf(last.id)).status, 'completed');
  });

  it('streams without usage unless asked', async () => {
    const stream = await client.chat.completions.create({
      model: FAST(3),
      messages: [{ role: 'user', content: 'x' }],
      stream: true,
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.every((c) => !('usage' in c)));
    assert.ok(chunks.every((c) => c.choices.length === 1));
  });

  it('a dropped stream (controller.abort) cancels the task at once, reason disconnect', async () => {
    const stream = await client.chat.completions.create({
      model: SLOW,
      messages: [{ role: 'user', content: 'Go on forever.' }],
      stream: true,
    });
    let id = '';
    let n = 0;
    for await (const c of stream) {
      id = c.id;
      if (++n === 4) stream.controller.abort();
    }
    assert.ok(id.startsWith('task_'));
    const t = await waitEnded(id);
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.reason, 'disconnect');
    assert.ok(t.output_text.length > 0, 'the partial output is kept');
  });

  it('a dropped stream closes the upstream socket of the model call', async () => {
    const before = upstream.requests.length;
    const stream = await client.chat.completions.create({
      model: 'openai:gpt-fake',
      messages: [{ role: 'user', content: 'Upstream please.' }],
      stream: true,
    });
    let id = '';
    let text = '';
    for await (const c of stream) {
      id = c.id;
      text += c.choices[0]?.delta.content ?? '';
      if (text.includes('t2')) stream.controller.abort();
    }
    const req = await upstream.waitForRequests(before + 1);
    assert.equal((req.body as { model: string }).model, 'gpt-fake');
    await upstream.waitForSocketClose(req);
    assert.equal(req.completed, false, 'the upstream answer was cut, not finished');
    assert.equal(req.tokensAfterClientGone, 0);
    assert.ok(req.tokensWritten < 300);
    const t = await waitEnded(id);
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.reason, 'disconnect');
  });

  it('a non-streamed request whose client aborts cancels its task too', async () => {
    const earlier = await newestCompletion();
    const ac = new AbortController();
    const p = client.chat.completions.create(
      { model: SLOW, messages: [{ role: 'user', content: 'Slow and unstreamed.' }] },
      { signal: ac.signal },
    );
    const running = await eventually(async () => {
      const t = await newestCompletion();
      return t && t.id !== earlier?.id && t.status === 'running' ? t : null;
    });
    ac.abort();
    await assert.rejects(p);
    const t = await waitEnded(running.id);
    assert.equal(t.status, 'cancelled');
    assert.equal(t.cancel.reason, 'disconnect');
  });

  it('a completion cancelled by someone else ends the stream with an error the client raises', async () => {
    const stream = await client.chat.completions.create({
      model: SLOW,
      messages: [{ role: 'user', content: 'Cancel me elsewhere.' }],
      stream: true,
    });
    let n = 0;
    await assert.rejects(
      (async () => {
        for await (const c of stream) {
          if (++n === 3) await api(s.url, 'POST', `/api/tasks/${c.id}/cancel`, { key: 'k-alice' });
        }
      })(),
      (e: unknown) => {
        assert.ok(e instanceof APIError);
        assert.equal(e.code, 'task_cancelled');
        assert.match(e.message, /reason: user/);
        return true;
      },
    );
  });

  it('an upstream failure is an OpenAI error (unstreamed: HTTP status; streamed: error frame)', async () => {
    upstream.options = { behaviour: 'error', status: 400, errorMessage: 'bad thing upstream' };
    try {
      await assert.rejects(
        client.chat.completions.create({ model: 'openai:gpt-fake', messages: [{ role: 'user', content: 'x' }] }),
        (e: unknown) => {
          assert.ok(e instanceof APIError);
          assert.equal(e.status, 502);
          assert.equal(e.code, 'upstream_error');
          assert.match(e.message, /bad thing upstream/);
          return true;
        },
      );
      const stream = await client.chat.completions.create({
        model: 'openai:gpt-fake',
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
      });
      await assert.rejects(
        (async () => {
          for await (const _ of stream);
        })(),
        (e: unknown) => e instanceof APIError && e.code === 'upstream_error',
      );
    } finally {
      upstream.options = {
        behaviour: 'stream',
        intervalMs: 30,
        tokens: Array.from({ length: 300 }, (_, i) => ` t${i}`),
      };
    }
  });

  describe('bad requests', () => {
    const bad = async (body: unknown) => {
      try {
        await client.chat.completions.create(body as never);
      } catch (e) {
        return e;
      }
      assert.fail('the request succeeded');
    };

    it('missing model / messages → 400 naming the param', async () => {
      const e1 = await bad({ messages: [{ role: 'user', content: 'x' }] });
      assert.ok(e1 instanceof BadRequestError);
      assert.equal(e1.param, 'model');
      assert.match(e1.message, /Missing required parameter: 'model'/);
      const e2 = await bad({ model: FAST(1) });
      assert.ok(e2 instanceof BadRequestError);
      assert.equal(e2.param, 'messages');
      const e3 = await bad({ model: FAST(1), messages: [] });
      assert.ok(e3 instanceof BadRequestError);
      assert.equal(e3.param, 'messages');
    });

    it('wrong types → 400 naming the field', async () => {
      const cases: Array<[unknown, string]> = [
        [{ model: 42, messages: [{ role: 'user', content: 'x' }] }, 'model'],
        [{ model: FAST(1), messages: 'hi' }, 'messages'],
        [{ model: FAST(1), messages: [{ role: 'user', content: 7 }] }, 'messages[0].content'],
        [{ model: FAST(1), messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
        [{ model: FAST(1), messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }, 'temperature'],
        [{ model: FAST(1), messages: [{ role: 'user', content: 'x' }], max_tokens: -1 }, 'max_tokens'],
        [{ model: FAST(1), messages: [{ role: 'user', content: 'x' }], stream: 'yes' }, 'stream'],
      ];
      for (const [body, param] of cases) {
        const e = await bad(body);
        assert.ok(e instanceof BadRequestError, JSON.stringify(body));
        assert.equal(e.param, param, JSON.stringify(body));
        assert.equal(e.type, 'invalid_request_error');
        assert.equal(e.code, 'invalid_request');
      }
    });

    it('unknown and unsupported parameters → 400', async () => {
      const unknown = await bad({ model: FAST(1), messages: [{ role: 'user', content: 'x' }], frobnicate: true });
      assert.ok(unknown instanceof BadRequestError);
      assert.equal(unknown.param, 'frobnicate');
      assert.match(unknown.message, /Unrecognized request argument supplied: frobnicate/);
      const tools = await bad({
        model: FAST(1),
        messages: [{ role: 'user', content: 'x' }],
        tools: [{ type: 'function', function: { name: 'f' } }],
      });
      assert.ok(tools instanceof BadRequestError);
      assert.equal(tools.param, 'tools');
      const n = await bad({ model: FAST(1), messages: [{ role: 'user', content: 'x' }], n: 2 });
      assert.ok(n instanceof BadRequestError);
      assert.equal(n.param, 'n');
    });

    it('unknown model → 404 model_not_found; no task is created', async () => {
      const before = await newestCompletion();
      const e = await bad({ model: 'gpt-nonexistent', messages: [{ role: 'user', content: 'x' }] });
      assert.ok(e instanceof NotFoundError);
      assert.equal(e.code, 'model_not_found');
      assert.equal(e.param, 'model');
      assert.match(e.message, /gpt-nonexistent/);
      assert.equal((await newestCompletion())?.id, before?.id);
    });

    it('invalid JSON and wrong methods get OpenAI-shaped errors too', async () => {
      const r = await api(s.url, 'POST', '/v1/chat/completions', {
        key: 'k-alice',
        rawBody: '{"model":',
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(r.status, 400);
      assert.deepEqual(Object.keys(r.body.error).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(r.body.error.code, 'invalid_json');
      const m = await api(s.url, 'DELETE', '/v1/chat/completions', { key: 'k-alice' });
      assert.equal(m.status, 405);
      assert.equal(m.body.error.code, 'method_not_allowed');
      assert.equal(m.body.error.type, 'invalid_request_error');
      const nf = await api(s.url, 'GET', '/v1/nothing-here', { key: 'k-alice' });
      assert.equal(nf.status, 404);
      assert.equal(nf.body.error.code, 'not_found');
      assert.equal(nf.body.error.param, null);
    });

    it('a wrong or missing key → 401 in OpenAI shape (the client raises AuthenticationError)', async () => {
      const wrong = new OpenAI({ apiKey: 'nope', baseURL: `${s.url}/v1`, maxRetries: 0 });
      await assert.rejects(wrong.models.list(), (e: unknown) => {
        assert.ok(e instanceof AuthenticationError);
        assert.equal(e.status, 401);
        assert.equal(e.code, 'unauthorized');
        return true;
      });
      const r = await api(s.url, 'POST', '/v1/chat/completions', {
        body: { model: FAST(1), messages: [{ role: 'user', content: 'x' }] },
      });
      assert.equal(r.status, 401);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
      assert.deepEqual(r.body, {
        error: { message: r.body.error.message, type: 'authentication_error', param: null, code: 'unauthorized' },
      });
      // /api keeps leash's own shape.
      const leash = await api(s.url, 'GET', '/api/tasks');
      assert.equal(leash.status, 401);
      assert.equal(leash.body.error.type, undefined);
      assert.equal(leash.body.error.code, 'unauthorized');
    });

    it("another owner's completion task is not theirs to see", async () => {
      const r = await client.chat.completions.create({ model: FAST(2), messages: [{ role: 'user', content: 'mine' }] });
      const bob = await api(s.url, 'GET', `/api/tasks/${r.id}`, { key: 'k-bob' });
      assert.equal(bob.status, 404);
    });
  });
});
