// `completion`: one model call over a list of messages the caller sends in full
// (what POST /v1/chat/completions runs). Unlike `chat` it keeps no history: the
// messages are the whole context. Running it as a task makes an OpenAI-style call
// visible, cancellable and metered like any other work.

import { z } from 'zod';
import { defineTask } from '../runtime/define-task.ts';
import { MODEL_ENV } from '../runtime/isolation/env.ts';
import { collectStream } from '../models/collect.ts';
import type { Usage } from '../models/model.ts';

export const MAX_COMPLETION_MESSAGES = 10_000;

export const completionInput = z.strictObject({
  messages: z
    .array(
      z.strictObject({
        role: z.enum(['system', 'user', 'assistant']),
        content: z.string().max(1_000_000),
      }),
    )
    .min(1)
    .max(MAX_COMPLETION_MESSAGES),
  model: z.string().min(1).max(200).optional(),
  max_tokens: z.number().int().positive().max(1_000_000).optional(),
  temperature: z.number().min(0).max(2).optional(),
});

export interface CompletionResult {
  text: string;
  model: string;
  usage: Usage;
  finish_reason: 'stop' | 'length';
}

export const completion = defineTask({
  type: 'completion',
  // Loadable in isolation: an operator may run it `worker` / `process` (a real kill).
  module: import.meta.url,
  // Its model call needs the provider settings if an operator runs it isolated.
  env: MODEL_ENV,
  description: 'One model call over the given messages (POST /v1/chat/completions).',
  input: completionInput,
  deadlineMs: 10 * 60_000,
  async run(input, ctx): Promise<CompletionResult> {
    const model = ctx.models.resolve(input.model);
    const out = await collectStream(
      model,
      {
        messages: input.messages,
        abortSignal: ctx.signal,
        ...(input.max_tokens !== undefined && { maxTokens: input.max_tokens }),
        ...(input.temperature !== undefined && { temperature: input.temperature }),
      },
      (text) => {
        ctx.emit(text);
      },
    );
    // A model that ignored the signal must not turn a cancelled task into a result.
    ctx.signal.throwIfAborted();
    return {
      text: out.text,
      model: model.id,
      usage: out.usage,
      finish_reason: out.finishReason === 'length' ? 'length' : 'stop',
    };
  },
});
