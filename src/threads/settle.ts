import { isTerminal } from '../core/types.ts';
import type { Message, MessageStatus, Store } from '../store/store.ts';

const MESSAGE_STATUS = { completed: 'complete', cancelled: 'cancelled', failed: 'failed' } as const;

/**
 * Answers left `streaming` by a task that ended without updating them (cancelled
 * while queued, lost with its node) take their task's final text and status, and
 * the fix is persisted. An answer whose task is gone is `failed`.
 */
export async function settleAnswers(
  store: Store,
  messages: Message[],
  /** Given: an answer still streaming shows its text so far (this node's, else the stored). */
  liveText?: (taskId: string) => string | null,
): Promise<Message[]> {
  const out: Message[] = [];
  for (const m of messages) {
    if (m.role !== 'assistant' || m.status !== 'streaming' || !m.task_id) {
      out.push(m);
      continue;
    }
    const task = await store.getTask(m.task_id);
    if (task && !isTerminal(task.status)) {
      out.push(liveText ? { ...m, content: liveText(task.id) ?? task.output_text } : m);
      continue;
    }
    const status: MessageStatus = task ? MESSAGE_STATUS[task.status as keyof typeof MESSAGE_STATUS] : 'failed';
    const content = task ? task.output_text : m.content;
    await store.updateMessage(m.id, { status, content });
    out.push({ ...m, status, content });
  }
  return out;
}
