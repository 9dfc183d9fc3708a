// The SQLite store on a thread of its own. node:sqlite is synchronous: on the event
// loop's thread every write (a write-behind batch of a thousand streams' deltas is
// tens of milliseconds) holds up every socket. Here the same SqliteStore runs in a
// worker and each Store method is forwarded to it: the forwarders are generated from
// STORE_METHODS (worker-protocol.ts), which the compiler proves lists every method.
// Calls run there one at a time in the order they were made, so the store behaves as
// it does in-thread: a read sees every write called before it. The notifier stays on
// this thread (it is this process's in-memory pub/sub; the store never publishes itself).

import { Worker } from 'node:worker_threads';
import { LeashError } from '../../core/errors.ts';
import type { Notifier, Store } from '../store.ts';
import { LocalNotifier } from './notifier.ts';
import {
  revive,
  STORE_METHODS,
  type FromStoreWorker,
  type StoreMethod,
  type ToStoreWorker,
} from './worker-protocol.ts';

export type SqliteWorkerStore = Store & { readonly kind: 'sqlite' };

export const SqliteWorkerStore = {
  /** Opens `path` (a file or `:memory:`) on a new thread; rejects as SqliteStore.open would. */
  async open(path: string, options: { notifier?: Notifier } = {}): Promise<SqliteWorkerStore> {
    const thread = await StoreThread.start(path);
    return {
      kind: 'sqlite',
      notifier: options.notifier ?? new LocalNotifier(),
      ...forwarders(thread),
      close: () => thread.close(),
    };
  },
};

/** A Store method for each name in STORE_METHODS, each one a call on the thread. */
function forwarders(thread: StoreThread): Pick<Store, StoreMethod> {
  const out: Partial<Record<StoreMethod, (...args: unknown[]) => Promise<unknown>>> = {};
  for (const method of Object.keys(STORE_METHODS) as StoreMethod[]) {
    out[method] = (...args) => thread.call(method, args);
  }
  // Complete (STORE_METHODS names every method) and exact: each forwarder takes the
  // method's arguments and resolves with what the SqliteStore method resolves with there.
  return out as unknown as Pick<Store, StoreMethod>;
}

/** The worker running a SqliteStore, and the calls waiting for its answers. */
class StoreThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  #next = 1;
  #dead: Error | null = null;

  static async start(path: string): Promise<StoreThread> {
    // `.js` once built into dist/ (the installed package), `.ts` when run from source.
    const entry = `./worker-entry${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`;
    const worker = new Worker(new URL(entry, import.meta.url), { workerData: { path }, execArgv: [] });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromStoreWorker): void => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'open-failed') reject(revive(m.error));
        else return;
        worker.off('message', onMessage);
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    worker.unref(); // an idle store does not keep the process up, as with an in-thread database
    return new StoreThread(worker);
  }

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on('message', (m: FromStoreWorker) => {
      if (m.type !== 'result') return;
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (this.#pending.size === 0) worker.unref();
      if (m.ok) p.resolve(m.value);
      else p.reject(revive(m.error));
    });
    const fail = (err: Error): void => {
      this.#dead ??= err;
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new LeashError('store_unavailable', `the SQLite thread exited (${code})`)));
  }

  call(method: StoreMethod, args: unknown[]): Promise<unknown> {
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise((resolve, reject) => {
      const id = this.#next++;
      // Referenced while a call is under way (an awaited call keeps the process up), not while idle.
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ type: 'call', id, method, args } satisfies ToStoreWorker);
    });
  }

  /** Closes the database on its thread, then ends the thread; later calls reject `store_closed`. */
  async close(): Promise<void> {
    if (this.#dead) return;
    try {
      await this.call('close', []);
    } finally {
      this.#dead ??= new LeashError('store_closed', 'the SQLite store is closed');
      await this.#worker.terminate();
    }
  }
}
