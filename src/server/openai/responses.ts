// The Responses API over threads: a response is one `chat` run; its id is the task
// id. `previous_response_id` continues that response's thread (see
// response-thread.ts), so a cancelled turn stays in the model's context.
//
//   POST /v1/responses                 create; `background` answers at once, `stream`
//                                      streams the events, otherwise waits for the end
//   GET  /v1/responses/:id             the response; `?stream=true&starting_after=N`
//                                      replays its events after sequence_number N, then follows
//   POST /v1/responses/:id/cancel      idempotent; 400 for a completed or failed one
//   DELETE /v1/responses/:id           an ended response (409 `task_active` while it runs)
//
// Any response can be cancelled (OpenAI only allows it for background ones), and a
// non-background stream whose client disconnects is cancelled (reason `disconnect`);
// a background one runs on and can be resumed.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ChatMessage } from '../../models/model.ts';
import { LeashError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import type { Threads } from '../../threads/threads.ts';
import { nowIso } from '../../core/types.ts';
import type { TaskRouteDeps } from '../routes/tasks.ts';
import { MAX_MESSAGE_CHARS } from '../../core/wire/fields.ts';
import { OpenAiError, parseOpenAi } from './errors.ts';
import { resolveModel } from './models.ts';
import { ResponseEventTranslator } from './response-events.ts';
import type { LoadedResponse } from './response-load.ts';
import { loadResponse } from './response-load.ts';
import { threadForResponse } from './response-thread.ts';
import { carriedHeaders, eventFrame, writeFrames } from '../sse.ts';
import { cancelForDisconnect } from '../cancel-on-disconnect.ts';
import { waitForClient } from './task-io.ts';

export interface ResponseRouteDeps extends TaskRouteDeps {
  threads: Threads;
}

/** How long cancel waits for the work to stop before answering `in_progress`. */
export const CANCEL_SETTLE_MS = 5_000;

const contentPart = z.union([
  z.strictObject({ type: z.literal('input_text'), text: z.string() }),
  // An earlier answer fed back as input (annotations etc. are ignored).
  z.object({ type: z.literal('output_text'), text: z.string() }),
]);
const inputMessage = z.strictObject({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string().max(MAX_MESSAGE_CHARS), z.array(contentPart).max(1000)], {
    error: 'must be a string or an array of input_text parts',
  }),
  id: z.string().max(128).optional(),
  status: z.string().max(32).optional(),
  phase: z.string().max(32).nullable().optional(),
});
const optionalNumber = z.number().nullable().optional();

const baseBody = z.strictObject({
  model: z.string().min(1).max(200),
  instructions: z.string().max(100_000).nullable().optional(),
  background: z.boolean().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_obfuscation: z.boolean().optional() }).strict().nullable().optional(),
  previous_response_id: z.string().min(1).max(128).nullable().optional(),
  // Accepted; leash keeps every response as a task (retention applies) whatever `store` says.
  store: z.boolean().nullable().optional(),
  // Accepted and ignored: leash does not keep response metadata.
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: optionalNumber,
  user: z.string().max(256).optional(),
  safety_identifier: z.string().max(256).optional(),
  prompt_cache_key: z.string().max(1024).optional(),
  service_tier: z.string().nullable().optional(),
  parallel_tool_calls: z.boolean().nullable().optional(),
  truncation: z.enum(['auto', 'disabled']).nullable().optional(),
  include: z.array(z.string()).nullable().optional(),
  reasoning: z.looseObject({}).nullable().optional(),
  text: z
    .object({
      format: z.strictObject({ type: z.literal('text', 'only text responses are supported') }).optional(),
      verbosity: z.string().nullable().optional(),
    })
    .strict()
    .optional(),
  max_output_tokens: z.number().int().positive().max(1_000_000).nullable().optional(),
  tools: z.array(z.unknown()).max(0, 'tools are not supported').optional(),
  tool_choice: z.enum(['none', 'auto']).optional(),
});
// `input` is a string or a list of items; picking the schema by its type makes a
// bad item's error name the item (`input[0].content`) instead of just `input`.
const textBody = baseBody.extend({ input: z.string().min(1, 'must not be empty').max(MAX_MESSAGE_CHARS) });
const itemsBody = baseBody.extend({
  input: z.array(inputMessage).min(1, 'must contain at least one message').max(1000),
});
type CreateBody = z.output<typeof textBody> | z.output<typeof itemsBody>;

const boolQuery = z.enum(['true', 'false', '1', '0']).transform((s) => s === 'true' || s === '1');
const retrieveQuery = z.object({
  stream: boolQuery.optional(),
  starting_after: z.coerce.number().int().min(-1).optional(),
});
const idParams = z.object({ id: z.string().min(1).max(128) });

function responseId(request: FastifyRequest): string {
  const r = idParams.safeParse(request.params);
  return r.success ? r.data.id : '';
}

const notFound = (id: string): OpenAiError =>
  new OpenAiError(404, 'not_found', `Response with id '${id}' not found.`, null);

function textOf(content: z.output<typeof inputMessage>['content']): string {
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

/** The input as conversation messages; the last one must be the user's. */
function inputMessages(input: CreateBody['input']): ChatMessage[] {
  if (typeof input === 'string') return [{ role: 'user', content: input }];
  const out = input.map((m): ChatMessage => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: textOf(m.content),
  }));
  const last = out.at(-1);
  if (last?.role !== 'user' || last.content === '') {
    throw new OpenAiError(400, 'invalid_request', 'The last input item must be a non-empty user message.', 'input');
  }
  return out;
}

export function registerResponseRoutes(v1: FastifyInstance, deps: ResponseRouteDeps): void {
  const { runtime, threads } = deps;
  const store = runtime.store;

  async function mustLoad(request: FastifyRequest, background: boolean | null = null): Promise<LoadedResponse> {
    const id = responseId(request);
    const r = id === '' ? null : await loadResponse(runtime, id, request.owner, background);
    if (!r) throw notFound(id);
    return r;
  }

  /** Streams a response's events after sequence_number `after` (-1: all of them). */
  async function streamResponse(
    request: FastifyRequest,
    reply: FastifyReply,
    loaded: LoadedResponse,
    after: number,
    cancelOnDisconnect: boolean,
  ): Promise<void> {
    const { task, info } = loaded;
    deps.streams.holdForResponse(request, reply);
    const final = async () => {
      const r = await loadResponse(runtime, task.id, request.owner, info.background);
      if (!r) throw new LeashError('not_found', `Response ${task.id} was deleted while streaming.`);
      return r.response;
    };
    async function* frames(signal: AbortSignal): AsyncGenerator<string> {
      const tr = new ResponseEventTranslator(info, final);
      // Always from the start of the log: numbering is a function of the whole log.
      for await (const e of runtime.events(task.id, { after: 0, signal })) {
        for (const ev of await tr.translate(e)) if (ev.sequence_number > after) yield eventFrame(ev);
        if (tr.ended) return;
      }
    }
    reply.hijack();
    const end = await writeFrames(reply.raw, frames, {
      keepaliveMs: deps.keepaliveMs,
      signal: deps.closing,
      headers: { ...carriedHeaders(reply), 'x-task-id': task.id },
      onError: (err) => request.log.error({ err, task_id: task.id }, 'response stream failed'),
    });
    if (end === 'client_gone' && cancelOnDisconnect)
      await cancelForDisconnect(runtime, request.owner, task.id, request.log);
  }

  v1.post('/responses', async (request, reply) => {
    const raw = request.body as { input?: unknown } | null | undefined;
    const body: CreateBody = parseOpenAi(typeof raw?.input === 'string' ? textBody : itemsBody, request.body);
    resolveModel(runtime, body.model);
    // Streamed or waited for, the connection stays open: counted before any work starts.
    if (body.stream === true || body.background !== true) deps.streams.holdForResponse(request, reply);
    const messages = inputMessages(body.input);
    const threadId = await threadForResponse(runtime, threads, request.owner, body.previous_response_id);
    // Earlier input items join the conversation before the run's own user message.
    for (const m of messages.slice(0, -1)) {
      await store.appendMessage({
        id: newId('msg'),
        thread_id: threadId,
        role: m.role,
        content: m.content,
        status: 'complete',
        task_id: null,
        created_at: nowIso(),
      });
    }
    const run = await threads.run(threadId, request.owner, {
      content: messages.at(-1)!.content,
      model: body.model,
      // A queued follow-up waits for the response it continues instead of interrupting it.
      multitask: 'enqueue',
      ...(body.instructions != null && { system: body.instructions }),
      ...(body.max_output_tokens != null && { max_tokens: body.max_output_tokens }),
      ...(body.temperature != null && { temperature: body.temperature }),
    });
    const background = body.background === true;
    const id = run.task.id;
    const loaded = await loadResponse(runtime, id, request.owner, background);
    if (!loaded) throw notFound(id);
    if (body.stream === true) return streamResponse(request, reply, loaded, -1, !background);
    reply.header('x-task-id', id);
    if (background) return loaded.response;
    const final = await waitForClient(runtime, request, reply, id, deps.closing);
    if (final === null) return reply.code(499).send(); // the client is gone; nobody reads this
    return (await loadResponse(runtime, id, request.owner, false))?.response ?? loaded.response;
  });

  v1.get('/responses/:id', async (request, reply) => {
    const q = parseOpenAi(retrieveQuery, request.query, 'query');
    const loaded = await mustLoad(request);
    if (q.stream === true) return streamResponse(request, reply, loaded, q.starting_after ?? -1, false);
    reply.header('x-task-id', loaded.task.id);
    return loaded.response;
  });

  v1.post('/responses/:id/cancel', async (request) => {
    const loaded = await mustLoad(request);
    const { task } = loaded;
    try {
      await runtime.cancel(task.id, request.owner, 'user');
    } catch (e) {
      if (LeashError.is(e, 'task_ended')) {
        const status = (e.details as { status?: string } | undefined)?.status ?? task.status;
        throw new OpenAiError(400, 'task_ended', `Cannot cancel a ${status} response.`, null);
      }
      if (LeashError.is(e, 'not_found')) throw notFound(task.id);
      throw e;
    }
    // Usually stopped within milliseconds: answer with the final state when it is there.
    await runtime.wait(task.id, request.owner, CANCEL_SETTLE_MS, deps.closing);
    return (await mustLoad(request)).response;
  });

  v1.delete('/responses/:id', async (request) => {
    const { task } = await mustLoad(request);
    await runtime.delete(task.id, request.owner);
    return { id: task.id, object: 'response', deleted: true };
  });
}
