// POST /v1/chat/completions as a `completion` task: visible in /api/tasks,
// cancellable, metered. Streamed: `chat.completion.chunk` SSE — a first chunk with
// the role, one chunk per delta, a last chunk with finish_reason, the usage chunk
// when `stream_options.include_usage`, then `data: [DONE]`. A client that drops the
// connection (streamed or not) cancels the task with reason `disconnect` at once.
// The completion's `id` is the task id (also in the `x-task-id` header).
//
// A task that fails or is cancelled by someone else mid-stream ends the stream with
// an OpenAI error frame `data: {"error": {...}}` (the official clients raise it);
// unstreamed, it is an HTTP error (cancelled: 409 `task_cancelled`).

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ChatMessage } from '../../models/model.ts';
import { httpStatusOf, type ErrorCode } from '../../core/error-codes.ts';
import type { CancelReason, Task, TaskError } from '../../core/types.ts';
import type { CompletionResult } from '../../tasks/completion.ts';
import { MAX_COMPLETION_MESSAGES } from '../../tasks/completion.ts';
import type { TaskRouteDeps } from '../routes/tasks.ts';
import { MAX_MESSAGE_CHARS } from '../../core/wire/fields.ts';
import { OpenAiError, errorTypeOf, parseOpenAi } from './errors.ts';
import type { OpenAiErrorBody } from './errors.ts';
import { resolveModel } from './models.ts';
import type { CompletionHead } from './shapes.ts';
import { chatChunk, chatCompletion, unixSeconds, usageChunk } from './shapes.ts';
import { carriedHeaders, dataFrame, writeFrames } from '../sse.ts';
import { cancelForDisconnect } from '../cancel-on-disconnect.ts';
import { waitForClient } from './task-io.ts';

const textPart = z.strictObject({ type: z.literal('text'), text: z.string() });
const message = z.strictObject({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([z.string().max(MAX_MESSAGE_CHARS), z.array(textPart).max(1000)], {
    error: 'must be a string or an array of text parts',
  }),
  name: z.string().max(256).optional(),
});
const optionalNumber = z.number().nullable().optional();
const maxTokens = z.number().int().positive().max(1_000_000).nullable().optional();

// OpenAI rejects unknown parameters; so does leash. Parameters that change nothing
// for a text-only answer are accepted; ones leash cannot honour are refused.
const chatBody = z.strictObject({
  model: z.string().min(1).max(200),
  messages: z.array(message).min(1, 'must contain at least one message').max(MAX_COMPLETION_MESSAGES),
  stream: z.boolean().nullable().optional(),
  stream_options: z
    .object({ include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional() })
    .strict()
    .nullable()
    .optional(),
  max_tokens: maxTokens,
  max_completion_tokens: maxTokens,
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: optionalNumber,
  frequency_penalty: optionalNumber,
  presence_penalty: optionalNumber,
  seed: z.number().int().nullable().optional(),
  user: z.string().max(256).optional(),
  safety_identifier: z.string().max(256).optional(),
  prompt_cache_key: z.string().max(1024).optional(),
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  store: z.boolean().nullable().optional(),
  service_tier: z.string().nullable().optional(),
  parallel_tool_calls: z.boolean().optional(),
  reasoning_effort: z.string().nullable().optional(),
  verbosity: z.string().nullable().optional(),
  n: z.literal(1, 'leash returns one choice: n must be 1').nullable().optional(),
  logprobs: z.literal(false, 'logprobs are not supported').nullable().optional(),
  response_format: z.strictObject({ type: z.literal('text', 'only text responses are supported') }).optional(),
  stop: z.union([z.null(), z.array(z.string()).max(0, 'stop sequences are not supported')]).optional(),
  tools: z.array(z.unknown()).max(0, 'tools are not supported').optional(),
  tool_choice: z.literal('none', 'tools are not supported').optional(),
});

type ChatBody = z.output<typeof chatBody>;

function toChatMessage(m: ChatBody['messages'][number]): ChatMessage {
  const content = typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('');
  return { role: m.role === 'developer' ? 'system' : m.role, content };
}

/** The OpenAI error for a task that ended without a result. */
export function taskEndError(task: Pick<Task, 'id' | 'status' | 'error' | 'cancel'>): OpenAiError {
  if (task.status === 'cancelled') {
    const reason: CancelReason = task.cancel?.reason ?? 'user';
    const status = reason === 'shutdown' ? 503 : reason === 'deadline' ? 504 : 409;
    return new OpenAiError(
      status,
      'task_cancelled',
      `The request was cancelled before it finished (reason: ${reason}; task ${task.id}).`,
    );
  }
  const err: TaskError = task.error ?? { code: 'internal_error', message: 'The task failed.' };
  const status = httpStatusOf(err.code);
  return new OpenAiError(status >= 400 ? status : 500, err.code as ErrorCode, err.message);
}

const errorFrame = (e: OpenAiError): string => {
  const body: OpenAiErrorBody = {
    error: { message: e.message, type: errorTypeOf(e.status), param: e.param, code: e.code },
  };
  return dataFrame(body);
};

async function* chunkFrames(
  deps: TaskRouteDeps,
  taskId: string,
  head: CompletionHead,
  includeUsage: boolean,
  signal: AbortSignal,
): AsyncGenerator<string> {
  yield dataFrame(chatChunk(head, { role: 'assistant', content: '' }, null, includeUsage));
  for await (const e of deps.runtime.events(taskId, { after: 0, signal })) {
    switch (e.type) {
      case 'output.delta':
        yield dataFrame(chatChunk(head, { content: e.data.text }, null, includeUsage));
        break;
      case 'task.completed': {
        const r = e.data.result as CompletionResult;
        yield dataFrame(chatChunk(head, {}, r.finish_reason, includeUsage));
        if (includeUsage) yield dataFrame(usageChunk(head, r.usage));
        yield 'data: [DONE]\n\n';
        return;
      }
      case 'task.failed':
        yield errorFrame(taskEndError({ id: taskId, status: 'failed', error: e.data.error, cancel: null }));
        return;
      case 'task.cancelled':
        yield errorFrame(
          taskEndError({
            id: taskId,
            status: 'cancelled',
            error: null,
            cancel: { reason: e.data.reason, requested_at: e.created_at },
          }),
        );
        return;
      default:
        break;
    }
  }
}

export function registerChatCompletionRoutes(v1: FastifyInstance, deps: TaskRouteDeps): void {
  const { runtime } = deps;

  v1.post('/chat/completions', async (request, reply) => {
    const body = parseOpenAi(chatBody, request.body);
    resolveModel(runtime, body.model);
    // Streamed or waited for, the connection stays open: counted before any work starts.
    deps.streams.holdForResponse(request, reply);
    const max = body.max_completion_tokens ?? body.max_tokens ?? undefined;
    const { task } = await runtime.create(request.owner, {
      type: 'completion',
      input: {
        messages: body.messages.map(toChatMessage),
        model: body.model,
        ...(max !== undefined && { max_tokens: max }),
        ...(body.temperature != null && { temperature: body.temperature }),
      },
    });
    const head: CompletionHead = { id: task.id, created: unixSeconds(task.created_at), model: body.model };
    const headers = { 'x-task-id': task.id };

    if (body.stream === true) {
      reply.hijack();
      const end = await writeFrames(
        reply.raw,
        (signal) => chunkFrames(deps, task.id, head, body.stream_options?.include_usage === true, signal),
        {
          keepaliveMs: deps.keepaliveMs,
          signal: deps.closing,
          headers: { ...carriedHeaders(reply), ...headers },
          onError: (err) => request.log.error({ err, task_id: task.id }, 'chat completion stream failed'),
        },
      );
      if (end === 'client_gone') await cancelForDisconnect(runtime, request.owner, task.id, request.log);
      return;
    }

    const final = await waitForClient(runtime, request, reply, task.id, deps.closing);
    reply.headers(headers);
    if (final === null) return reply.code(499).send(); // the client is gone; nobody reads this
    if (final.status === 'completed') {
      const r = final.result as CompletionResult;
      return chatCompletion(head, r.text, r.finish_reason, r.usage);
    }
    if (final.status === 'failed' || final.status === 'cancelled') throw taskEndError(final);
    throw new OpenAiError(504, 'timeout', `The completion did not finish in time (task ${task.id} still runs).`);
  });
}
