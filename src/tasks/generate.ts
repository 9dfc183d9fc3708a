// `generate`: one prompt → one streamed answer. The task's signal goes unchanged to
// the model call, so a cancel stops the token loop / upstream request at once.

import { z } from 'zod';
import { defineTask } from '../runtime/define-task.ts';
import { MODEL_ENV } from '../runtime/isolation/env.ts';
import { collectStream } from '../models/collect.ts';
import type { ChatMessage, Usage } from '../models/model.ts';

export const generateInput = z
  .object({
    prompt: z.string().min(1).max(1_000_000),
    system: z.string().optional(),
    model: z.string().optional(),
    max_tokens: z.number().int().positive().max(100_000).optional(),
  })
  .strict();

export interface GenerateResult {
  text: string;
  model: string;
  usage: Usage;
}

/** Without max_tokens progress is indeterminate; report the token count this often. */
const COUNT_EVERY = 20;

export const generate = defineTask({
  type: 'generate',
  // Loadable in isolation: an operator may run it `worker` / `process` (a real kill).
  module: import.meta.url,
  // Its model call needs the provider settings if an operator runs it isolated.
  env: MODEL_ENV,
  description: 'Generate text for a prompt, streamed token by token.',
  input: generateInput,
  deadlineMs: 10 * 60_000,
  async run(input, ctx): Promise<GenerateResult> {
    const model = ctx.models.resolve(input.model);
    const messages: ChatMessage[] = [];
    if (input.system !== undefined && input.system !== '') messages.push({ role: 'system', content: input.system });
    messages.push({ role: 'user', content: input.prompt });

    const max = input.max_tokens;
    ctx.progress(max === undefined ? null : 0, 'generating');
    let lastPct = 0;
    const out = await collectStream(model, { messages, abortSignal: ctx.signal, maxTokens: max }, (text, n) => {
      ctx.emit(text);
      // Only on a change of whole percent, so a long answer is not a progress event per token.
      if (max !== undefined) {
        const pct = Math.min(100, Math.floor((n / max) * 100));
        if (pct > lastPct) {
          lastPct = pct;
          ctx.progress(pct, `${n}/${max} tokens`);
        }
      } else if (n % COUNT_EVERY === 0) {
        ctx.progress(null, `${n} tokens`);
      }
    });
    // A model that ignored the signal must not turn a cancelled task into a result.
    ctx.signal.throwIfAborted();
    ctx.progress(100, `${out.deltas} tokens`);
    return { text: out.text, model: model.id, usage: out.usage };
  },
});
