// Builds the model's context from the stored thread. Seed 001's bug was a cancelled
// question missing from the next request; here the stored thread is the only source,
// and every cut-short or unanswered turn is included and marked for the model.

import type { ChatMessage } from '../models/model.ts';
import type { Message } from '../store/store.ts';
import { fitToBudget } from './context-budget.ts';

export const CUT_SHORT_NOTE = '[This answer was cut short: the user stopped it before it finished.]';
export const NO_ANSWER_NOTE = '[No answer: the user cancelled this request before it was answered.]';
export const FAILED_NOTE = '[This answer failed before it finished.]';

/**
 * `history` in conversation order (seq), ending with the user message being answered;
 * the newest of it that fits `budgetChars` (src/threads/context-budget.ts).
 */
export function buildModelContext(
  history: Message[],
  system?: string,
  budgetChars = Infinity,
  /** Messages older than `history` that were not read (loadRecentHistory); counted in the note. */
  olderLeftOut = 0,
): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const m of history) {
    if (m.role !== 'assistant') {
      out.push({ role: m.role, content: m.content });
      continue;
    }
    if (m.status === 'complete') out.push({ role: 'assistant', content: m.content });
    else if (m.status === 'cancelled' || m.status === 'streaming') {
      out.push({ role: 'assistant', content: m.content ? `${m.content}\n\n${CUT_SHORT_NOTE}` : NO_ANSWER_NOTE });
    } else out.push({ role: 'assistant', content: m.content ? `${m.content}\n\n${FAILED_NOTE}` : FAILED_NOTE });
  }
  const fitted = fitToBudget(out, budgetChars, olderLeftOut);
  return system ? [{ role: 'system', content: system }, ...fitted] : fitted;
}
