// Builds the model's context from the stored thread. Seed 001's bug was a cancelled
// question missing from the next request; here the stored thread is the only source,
// and every cut-short or unanswered turn is included and marked for the model.

import type { ChatMessage } from '../models/model.ts';
import type { CancelReason } from '../runtime/types.ts';
import type { Message } from '../store/store.ts';
import { cutShortNote, noAnswerNote } from './cut-short.ts';

/** The notes for a turn the user stopped (other causes: ./cut-short.ts). */
export const CUT_SHORT_NOTE = cutShortNote('user');
export const NO_ANSWER_NOTE = noAnswerNote('user');
export const FAILED_NOTE = '[This answer failed before it finished.]';

/**
 * `history` in conversation order (seq), ending with the user message being answered.
 * `cancelReasons` (by task id) names why each cut-short answer was stopped.
 */
export function buildModelContext(
  history: Message[],
  system?: string,
  cancelReasons?: ReadonlyMap<string, CancelReason>,
): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (system) out.push({ role: 'system', content: system });
  for (const m of history) {
    if (m.role !== 'assistant') {
      out.push({ role: m.role, content: m.content });
      continue;
    }
    if (m.status === 'complete') out.push({ role: 'assistant', content: m.content });
    else if (m.status === 'cancelled' || m.status === 'streaming') {
      const reason = m.task_id === null ? undefined : cancelReasons?.get(m.task_id);
      out.push({
        role: 'assistant',
        content: m.content ? `${m.content}\n\n${cutShortNote(reason)}` : noAnswerNote(reason),
      });
    } else out.push({ role: 'assistant', content: m.content ? `${m.content}\n\n${FAILED_NOTE}` : FAILED_NOTE });
  }
  return out;
}
