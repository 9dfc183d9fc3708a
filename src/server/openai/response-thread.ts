// Which thread a new response runs in. A new chain gets a new thread. With
// `previous_response_id` the response continues that response's thread, so every
// earlier turn — cancelled ones included, marked as cut short — is in the model's
// context. When that response is no longer the last turn of its thread (the chain
// was already continued from it: "regenerate", branching), its history up to and
// including it is copied into a new thread, as OpenAI's chains fork.

import { isTerminal } from '../../core/types.ts';
import { newId } from '../../core/ids.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import type { Threads } from '../../threads/threads.ts';
import { OpenAiError } from './errors.ts';

export const RESPONSES_THREAD_METADATA = { source: 'openai.responses' } as const;

export async function threadForResponse(
  runtime: Runtime,
  threads: Threads,
  owner: string,
  previousId: string | null | undefined,
): Promise<string> {
  if (previousId === null || previousId === undefined) {
    return (await threads.create(owner, { ...RESPONSES_THREAD_METADATA })).id;
  }
  const prev = await runtime.get(previousId, owner);
  if (!prev || prev.type !== 'chat' || prev.thread_id === null) {
    throw new OpenAiError(
      400,
      'previous_response_not_found',
      `Previous response with id '${previousId}' not found.`,
      'previous_response_id',
    );
  }
  const history = await threads.messages(prev.thread_id, owner);
  let last = -1;
  history.forEach((m, i) => {
    if (m.task_id === prev.id) last = i;
  });
  // Still running: its turn is the tail of its thread, and the new run queues behind it.
  if (last < 0 || last === history.length - 1 || !isTerminal(prev.status)) return prev.thread_id;

  const fork = await threads.create(owner, { ...RESPONSES_THREAD_METADATA, forked_from: prev.id });
  const store = runtime.store;
  for (const m of history.slice(0, last + 1)) {
    const copy = await store.appendMessage({
      id: newId('msg'),
      thread_id: fork.id,
      role: m.role,
      content: m.content,
      // Settled by threads.messages(); an answer still streaming here would be a lost one.
      status: m.status === 'streaming' ? 'cancelled' : m.status,
      task_id: m.task_id,
      created_at: m.created_at,
    });
    if (m.usage) await store.updateMessage(copy.id, { usage: m.usage });
  }
  return fork.id;
}
