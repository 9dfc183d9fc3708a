// Builds the model's context from the stored thread. Seed 001's bug was a cancelled
// question missing from the next request; here the stored thread is the only source,
// and every cut-short or unanswered turn is included and marked for the model.

import type { ChatMessage } from '../models/model.ts';
import type { CancelReason } from '../core/types.ts';
import type { Message } from '../store/store.ts';
import { fitToBudget } from './context-budget.ts';
import { cutShortNote, noAnswerNote } from './cut-short.ts';

/** The notes for a turn the user stopped (other causes: ./cut-short.ts). */
export const CUT_SHORT_NOTE = cutShortNote('user');
export const NO_ANSWER_NOTE = noAnswerNote('user');
export const FAILED_NOTE = '[This answer failed before it finished.]';

/**
 * `history` in conversation order (seq), ending with the user message being answered;
 * the newest of it that fits `opts.budgetChars` (src/threads/context-budget.ts).
 * `opts.cancelReasons` (by task id) names why each cut-short answer was stopped.
 */
export function buildModelContext(
  history: Message[],
  system?: string,
  opts: {
    budgetChars?: number;
    /** Messages older than `history` that were not read (loadRecentHistory); counted in the note. */
    olderLeftOut?: number;
    cancelReasons?: ReadonlyMap<string, CancelReason>;
  } = {},
): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const m of history) {
    if (m.role !== 'assistant') {
      out.push({ role: m.role, content: m.content });
      continue;
    }
    if (m.status === 'complete') out.push({ role: 'assistant', content: m.content });
    else if (m.status === 'cancelled' || m.status === 'streaming') {
      const reason = m.task_id === null ? undefined : opts.cancelReasons?.get(m.task_id);
      out.push({
        role: 'assistant',
        content: m.content ? `${m.content}\n\n${cutShortNote(reason)}` : noAnswerNote(reason),
      });
    } else out.push({ role: 'assistant', content: m.content ? `${m.content}\n\n${FAILED_NOTE}` : FAILED_NOTE });
  }
  const fitted = fitToBudget(out, opts.budgetChars ?? Infinity, opts.olderLeftOut ?? 0);
  return system ? [{ role: 'system', content: system }, ...fitted] : fitted;
}
