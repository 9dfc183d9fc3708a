// `chat`: one run of a thread. The context is rebuilt from the stored thread every
// time (never from client memory), and the answer is saved with whatever text the
// clients saw — complete, or cut short and marked `cancelled`.

import { z } from 'zod';
import { defineTask } from '../runtime/define-task.ts';
import { LeashError } from '../core/errors.ts';
import type { Usage } from '../models/model.ts';
import type { Message } from '../store/store.ts';
import { buildModelContext } from '../threads/context.ts';
import { contextCharsFromEnv } from '../threads/context-budget.ts';
import { loadRecentHistory } from '../threads/context-load.ts';
import { cancelReasons } from '../threads/cut-short.ts';

const input = z
  .object({
    user_message_id: z.string().min(1),
    assistant_message_id: z.string().min(1),
    model: z.string().min(1).max(200).optional(),
    system: z.string().max(100_000).optional(),
    max_tokens: z.number().int().positive().max(1_000_000).optional(),
    temperature: z.number().min(0).max(2).optional(),
  })
  .strict();

export interface ChatTaskOptions {
  /** The model context's budget in characters; default LEASH_THREAD_CONTEXT_CHARS or 32,000. */
  contextChars?: number;
}

/** The `chat` type with its own context budget (tests; the server uses `chat`). */
export function createChatTask(opts: ChatTaskOptions = {}) {
  // Read per run (`leash serve` has refused a bad value at start; nothing throws at import).
  const budget = (): number => opts.contextChars ?? contextCharsFromEnv(process.env);
  return defineTask({
    type: 'chat',
    // Loadable in isolation: an operator may run it `worker` / `process` (a real kill).
    module: import.meta.url,
    description: 'One assistant turn in a thread (started by POST /api/threads/:id/runs).',
    input,
    deadlineMs: 10 * 60_000,
    async run(input, ctx) {
      if (!ctx.threadId) throw new LeashError('invalid_request', 'chat tasks run inside a thread (thread_id missing).');
      const budgetChars = budget();
      const { answer, history, olderLeftOut } = await loadRecentHistory(
        ctx.store,
        ctx.threadId,
        input.assistant_message_id,
        budgetChars,
      );
      const model = ctx.models.resolve(input.model);
      let text = '';
      let usage: Usage | null = null;
      try {
        const call = {
          messages: buildModelContext(history, input.system, {
            budgetChars,
            olderLeftOut,
            cancelReasons: await cancelReasons(ctx.store, history),
          }),
          abortSignal: ctx.signal,
          ...(input.max_tokens !== undefined && { maxTokens: input.max_tokens }),
          ...(input.temperature !== undefined && { temperature: input.temperature }),
        };
        for await (const part of model.stream(call)) {
          if (part.type === 'text-delta') {
            if (ctx.emit(part.text)) text += part.text;
          } else usage = part.usage;
        }
        if (ctx.signal.aborted) throw ctx.signal.reason;
      } catch (e) {
        const finalUsage = usage ?? estimateUsage(history, text);
        await ctx.store.updateMessage(answer.id, {
          content: text,
          status: ctx.signal.aborted ? 'cancelled' : 'failed',
          usage: finalUsage,
        });
        throw e;
      }
      const finalUsage = usage ?? estimateUsage(history, text);
      await ctx.store.updateMessage(answer.id, { content: text, status: 'complete', usage: finalUsage });
      return { message_id: answer.id, text, model: model.id, usage: finalUsage };
    },
  });
}

export const chat = createChatTask();

/** Counted when the provider reported nothing (e.g. stopped mid-stream): words ≈ tokens. */
function estimateUsage(history: Message[], output: string): Usage {
  const words = (s: string): number => (s.match(/\S+/g) ?? []).length;
  return {
    input_tokens: history.reduce((n, m) => n + words(m.content), 0),
    output_tokens: words(output),
  };
}
