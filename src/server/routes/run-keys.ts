// Idempotency-Key for thread runs (POST /api/threads/:id/runs): a client that
// retries a run whose answer it never got (a network error, a page that sent it
// twice) gets the same run, not a second turn. Runs store their messages before
// the task exists, so the task's own idempotency key cannot do this; the keys are
// kept here, per node, for KEY_TTL_MS (a retry that lands on another node of a
// cluster starts a second run). A run that failed to start is forgotten, so a
// retry tries again.

import type { RunResult } from '../../threads/threads.ts';

export const KEY_TTL_MS = 10 * 60_000;
export const MAX_KEYS = 10_000;

interface Entry {
  at: number;
  run: Promise<RunResult>;
}

export class RunKeys {
  readonly #entries = new Map<string, Entry>();

  /** Starts the run once per (owner, thread, key); later calls get the first one's run. */
  async once(
    owner: string,
    threadId: string,
    key: string,
    start: () => Promise<RunResult>,
  ): Promise<{ run: RunResult; created: boolean }> {
    const now = Date.now();
    this.#sweep(now);
    const k = JSON.stringify([owner, threadId, key]);
    const seen = this.#entries.get(k);
    if (seen) return { run: await seen.run, created: false };
    const run = start();
    this.#entries.set(k, { at: now, run });
    try {
      return { run: await run, created: true };
    } catch (e) {
      this.#entries.delete(k);
      throw e;
    }
  }

  #sweep(now: number): void {
    // Map order is insertion order: the oldest entries come first.
    for (const [k, e] of this.#entries) {
      if (now - e.at < KEY_TTL_MS && this.#entries.size < MAX_KEYS) break;
      this.#entries.delete(k);
    }
  }
}
