// Connections that stay open (SSE streams, long polls, WebSockets) cost the server
// a socket and memory each for as long as the client likes, so each owner may hold
// only so many at once on a node (LEASH_MAX_STREAMS_PER_OWNER). Past it: 429
// `too_many_streams` with Retry-After, before any work is started for the request.

import type { FastifyReply, FastifyRequest } from 'fastify';
import { LeashError } from '../core/errors.ts';

export const DEFAULT_MAX_STREAMS_PER_OWNER = 100;
/** What a refused client is told to wait: streams end on their own as tasks finish. */
const RETRY_AFTER_S = 5;

export class StreamCaps {
  readonly #open = new Map<string, number>();
  readonly #held = new WeakSet<object>();

  readonly maxPerOwner: number;
  constructor(maxPerOwner: number = DEFAULT_MAX_STREAMS_PER_OWNER) {
    this.maxPerOwner = maxPerOwner;
  }

  /** Open streams of `owner` on this node. */
  openFor(owner: string): number {
    return this.#open.get(owner) ?? 0;
  }

  /** Takes one of `owner`'s stream slots; the returned function (idempotent) gives it back. */
  acquire(owner: string): () => void {
    const n = this.openFor(owner);
    if (n >= this.maxPerOwner) {
      throw new LeashError(
        'too_many_streams',
        `Too many open streams: this owner already holds ${n} (event streams, long polls and WebSockets count); ` +
          `close one or retry in ${RETRY_AFTER_S} s.`,
        { details: { limit: this.maxPerOwner, retry_after_s: RETRY_AFTER_S } },
      );
    }
    this.#open.set(owner, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(owner) ?? 1) - 1;
      if (left <= 0) this.#open.delete(owner);
      else this.#open.set(owner, left);
    };
  }

  /** Holds a slot for this request until its response closes (once per request). */
  holdForResponse(request: FastifyRequest, reply: FastifyReply): void {
    if (this.#held.has(request)) return;
    const release = this.acquire(request.owner);
    this.#held.add(request);
    if (reply.raw.closed) release();
    else reply.raw.once('close', release);
  }
}
