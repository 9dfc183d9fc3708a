// The budget of a thread's model context. A thread grows without end; what is sent
// to the model must not (cost, the provider's context limit, a hostile owner
// making every turn a megabyte). Characters, not tokens: no tokenizer per model,
// and a character bound is also a token bound (a token is at least one character;
// ≈ 4 characters per token for English).
//
// Rules: the newest message (the question being answered) is always sent, cut to
// the budget with a marker if it alone is longer; older messages are added newest
// first while they fit, and the first one that does not fit ends the window (no
// gaps). The window never starts with an assistant turn it lost the question of.
// The model is told how many messages were left out. The run's `system` prompt is
// sent in full on top of the budget (the API caps it at 100,000 characters).

import type { ChatMessage } from '../models/model.ts';

/** About 8,000 tokens. */
export const DEFAULT_CONTEXT_CHARS = 32_000;
/** Below this not even a short question and its marker fit. */
export const MIN_CONTEXT_CHARS = 1_000;
export const MAX_CONTEXT_CHARS = 100_000_000;

export function leftOutNote(n: number): string {
  return `[${n} earlier message${n === 1 ? ' was' : 's were'} left out to fit the context.]`;
}

export function truncatedNote(n: number): string {
  return `[… ${n} more character${n === 1 ? '' : 's'} of this message ${n === 1 ? 'was' : 'were'} left out to fit the context.]`;
}

/** `LEASH_THREAD_CONTEXT_CHARS`: an integer ≥ 1000; unset = the default. Throws a message naming the variable. */
export function contextCharsFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env.LEASH_THREAD_CONTEXT_CHARS?.trim();
  if (!raw) return DEFAULT_CONTEXT_CHARS;
  if (!/^\d{1,12}$/.test(raw) || Number(raw) < MIN_CONTEXT_CHARS || Number(raw) > MAX_CONTEXT_CHARS) {
    throw new Error(
      `Invalid LEASH_THREAD_CONTEXT_CHARS="${raw}": expected an integer from ${MIN_CONTEXT_CHARS} to ${MAX_CONTEXT_CHARS} (characters).`,
    );
  }
  return Number(raw);
}

/** `text` cut to at most `max` characters, the marker included (never splitting a surrogate pair). */
function truncate(text: string, max: number): string {
  // The marker for all of `text` is at least as long as the one for what is really left out.
  let cut = Math.max(0, max - `\n\n${truncatedNote(text.length)}`.length);
  const code = text.charCodeAt(cut - 1);
  if (cut > 0 && code >= 0xd800 && code <= 0xdbff) cut--;
  return `${text.slice(0, cut)}\n\n${truncatedNote(text.length - cut)}`;
}

/**
 * The newest messages of `conversation` (oldest first, already rendered for the
 * model) that fit in `budget` characters, preceded by a note saying how many were
 * left out — counting `olderLeftOut`, messages older than `conversation` that the
 * caller did not even read. `conversation` holds no system prompt.
 */
export function fitToBudget(conversation: ChatMessage[], budget: number, olderLeftOut = 0): ChatMessage[] {
  if (conversation.length === 0) return conversation;
  const newest = conversation.at(-1)!;
  const last = newest.content.length > budget ? { ...newest, content: truncate(newest.content, budget) } : newest;
  let used = last.content.length;
  let start = conversation.length - 1;
  while (start > 0 && used + conversation[start - 1]!.content.length <= budget) {
    start--;
    used += conversation[start]!.content.length;
  }
  // An answer whose question was left out would read as the model speaking first.
  if (start + olderLeftOut > 0) {
    while (start < conversation.length - 1 && conversation[start]!.role === 'assistant') start++;
  }
  const kept = [...conversation.slice(start, -1), last];
  const leftOut = start + olderLeftOut;
  return leftOut > 0 ? [{ role: 'system', content: leftOutNote(leftOut) }, ...kept] : kept;
}
