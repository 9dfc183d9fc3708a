// The thread that owns the SQLite database for SqliteWorkerStore: opens it, then runs
// each call it is sent, in order, one at a time, and answers with the result or the
// error (see worker-protocol.ts).

import { parentPort, workerData } from 'node:worker_threads';
import { SqliteStore } from './sqlite-store.ts';
import { isStoreMethod, toWire, type FromStoreWorker, type ToStoreWorker } from './worker-protocol.ts';

if (parentPort) {
  const port = parentPort;
  const send = (m: FromStoreWorker): void => port.postMessage(m);
  let store: SqliteStore;
  try {
    store = SqliteStore.open((workerData as { path: string }).path);
    send({ type: 'ready' });
  } catch (e) {
    send({ type: 'open-failed', error: toWire(e) });
    process.exit(0);
  }
  // One call at a time, in arrival order: the store's methods are synchronous inside
  // (their promises settle at once), so awaiting each keeps writes and reads ordered.
  let queue = Promise.resolve();
  port.on('message', (m: ToStoreWorker) => {
    queue = queue.then(async () => {
      try {
        if (!isStoreMethod(m.method)) throw new Error(`no store method ${String(m.method)}`);
        const fn = store[m.method] as (...args: unknown[]) => Promise<unknown>;
        const value = await fn.apply(store, m.args);
        send({ type: 'result', id: m.id, ok: true, value });
      } catch (e) {
        send({ type: 'result', id: m.id, ok: false, error: toWire(e) });
      }
    });
  });
}
