// What the model is told about a turn that was cut short, by the real cause: the
// cancelled task's cancel reason (the user stopped it, a new message interrupted it,
// its deadline passed, the server shut down, the client disconnected).

import type { CancelReason } from '../core/types.ts';
import type { Message, Store } from '../store/store.ts';

const CUT_SHORT: Record<CancelReason, string> = {
  user: 'the user stopped it before it finished',
  batch: 'the user stopped it before it finished',
  interrupted: 'the user sent a new message before it finished',
  deadline: 'it ran out of time (its deadline passed) before it finished',
  shutdown: 'the server shut down before it finished',
  disconnect: "the user's client disconnected before it finished",
  rollback: 'the user withdrew it before it finished',
};

const NO_ANSWER: Record<CancelReason, string> = {
  user: 'the user cancelled this request before it was answered',
  batch: 'the user cancelled this request before it was answered',
  interrupted: 'the user sent a new message before this one was answered',
  deadline: 'this request ran out of time (its deadline passed) before it was answered',
  shutdown: 'the server shut down before this request was answered',
  disconnect: "the user's client disconnected before this request was answered",
  rollback: 'the user withdrew this request before it was answered',
};

/** Appended to the partial text of a cut-short answer. Unknown cause: a neutral note. */
export function cutShortNote(reason: CancelReason | null | undefined): string {
  return reason
    ? `[This answer was cut short: ${CUT_SHORT[reason]}.]`
    : '[This answer was cut short before it finished.]';
}

/** Stands in for an answer that was stopped before any text. */
export function noAnswerNote(reason: CancelReason | null | undefined): string {
  return reason
    ? `[No answer: ${NO_ANSWER[reason]}.]`
    : '[No answer: this request was stopped before it was answered.]';
}

/** The cancel reason of each cut-short answer's task in `history`, by task id. */
export async function cancelReasons(
  store: Pick<Store, 'getTask'>,
  history: readonly Message[],
): Promise<Map<string, CancelReason>> {
  const out = new Map<string, CancelReason>();
  for (const m of history) {
    if (m.role !== 'assistant' || m.task_id === null || (m.status !== 'cancelled' && m.status !== 'streaming'))
      continue;
    const reason = (await store.getTask(m.task_id))?.cancel?.reason;
    if (reason) out.set(m.task_id, reason);
  }
  return out;
}
