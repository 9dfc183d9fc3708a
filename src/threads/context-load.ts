// Reads only the end of a thread for a run: newest first, in small chunks, until
// the context budget is more than full. A thread can grow to any size (each run
// adds up to a megabyte); reading all of it for every turn would let one owner's
// long thread take the server's memory.

import { LeashError } from '../core/errors.ts';
import type { Message, Store } from '../store/store.ts';
import { settleAnswers } from './settle.ts';

const CHUNK = 20;

export interface RecentHistory {
  /** The message this run answers. */
  answer: Message;
  /** Settled messages before `answer`, oldest first: at least everything that can fit the budget. */
  history: Message[];
  /** Messages older than `history`, not read. */
  olderLeftOut: number;
}

export async function loadRecentHistory(
  store: Store,
  threadId: string,
  answerId: string,
  budgetChars: number,
): Promise<RecentHistory> {
  let answer: Message | null = null;
  const picked: Message[] = []; // newest first
  let olderChars = 0; // of everything picked but the newest, which is always sent
  let full = false;
  let before: number | undefined;
  while (!full) {
    const rows = await store.listRecentMessages(threadId, CHUNK, before);
    for (let i = rows.length - 1; i >= 0 && !full; i--) {
      const m = rows[i]!;
      if (answer === null) {
        // Messages after the answer (runs queued behind this one) are not its context.
        if (m.id === answerId) answer = m;
        continue;
      }
      // Earlier answers are settled from their tasks so the model sees them as cut short, not in progress.
      const [settled] = await settleAnswers(store, [m]);
      picked.push(settled!);
      if (picked.length > 1) olderChars += settled!.content.length;
      // The model's rendering only adds notes: past the budget here, it is past it there.
      full = olderChars > budgetChars;
    }
    if (rows.length < CHUNK) break;
    before = rows[0]!.seq;
  }
  if (answer === null) throw new LeashError('not_found', 'The message this run answers was deleted.');
  const history = picked.reverse();
  const olderLeftOut = full && history.length > 0 ? await store.countMessagesBefore(threadId, history[0]!.seq) : 0;
  return { answer, history, olderLeftOut };
}
