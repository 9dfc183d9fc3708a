// In-process signalling for the single-node SQLite setup. Delivery is deferred to a
// microtask so a publisher (often inside store or runtime code) never re-enters a
// listener synchronously, and one throwing listener cannot starve the others.

import { EventEmitter } from 'node:events';
import type { Channel, Notifier } from '../store.ts';

export type ListenerErrorHandler = (err: unknown, channel: Channel) => void;

const defaultOnError: ListenerErrorHandler = (err, channel) => {
  const e = err instanceof Error ? err : new Error(String(err));
  process.emitWarning(e, { code: 'LEASH_NOTIFIER_LISTENER', detail: `listener on channel "${channel}" threw` });
};

export class LocalNotifier implements Notifier {
  readonly #emitter = new EventEmitter();
  readonly #onError: ListenerErrorHandler;

  constructor(onError: ListenerErrorHandler = defaultOnError) {
    this.#onError = onError;
    // Every SSE/WebSocket follower subscribes; the default cap of 10 would only warn.
    this.#emitter.setMaxListeners(0);
  }

  publish(channel: Channel, payload: string): Promise<void> {
    queueMicrotask(() => {
      // Listeners are read at delivery time: one unsubscribed in between gets nothing.
      for (const listener of this.#emitter.listeners(channel) as Array<(p: string) => void>) {
        try {
          listener(payload);
        } catch (err) {
          try {
            this.#onError(err, channel);
          } catch {
            // The error reporter itself failed; nothing sensible is left to do.
          }
        }
      }
    });
    return Promise.resolve();
  }

  subscribe(channel: Channel, listener: (payload: string) => void): () => void {
    // A wrapper per subscription: the same function subscribed twice is two
    // subscriptions, and each unsubscribe removes exactly its own, once.
    const wrapper = (payload: string): void => listener(payload);
    this.#emitter.on(channel, wrapper);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#emitter.off(channel, wrapper);
    };
  }

  /** Number of live subscriptions on a channel (for tests and metrics). */
  listenerCount(channel: Channel): number {
    return this.#emitter.listenerCount(channel);
  }
}
