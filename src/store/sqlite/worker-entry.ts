// The thread that owns the SQLite database for SqliteWorkerStore: opens it, then runs
// each call it is sent, in order, one at a time, and answers with the result or the
// error (LeashErrors keep their code and details across the boundary).

import { parentPort, workerData } from 'node:worker_threads';
import { LeashError } from '../../core/errors.ts';
import { SqliteStore } from './sqlite-store.ts';

export interface WorkerError {
  leash: boolean;
  name: string;
  message: string;
  code?: string;
  details?: unknown;
}
export type ToStoreWorker = { type: 'call'; id: number; method: string; args: unknown[] };
export type FromStoreWorker =
  | { type: 'ready' }
  | { type: 'open-failed'; error: WorkerError }
  | { type: 'result'; id: number; ok: true; value: unknown }
  | { type: 'result'; id: number; ok: false; error: WorkerError };

function toWire(e: unknown): WorkerError {
  if (e instanceof LeashError) {
    return { leash: true, name: e.name, message: e.message, code: e.code, details: e.details };
  }
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as { code?: unknown }).code;
  return { leash: false, name: err.name, message: err.message, ...(typeof code === 'string' && { code }) };
}

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
        const fn = (store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[m.method];
        if (typeof fn !== 'function') throw new Error(`no store method ${m.method}`);
        const value = await fn.apply(store, m.args);
        send({ type: 'result', id: m.id, ok: true, value });
      } catch (e) {
        send({ type: 'result', id: m.id, ok: false, error: toWire(e) });
      }
    });
  });
}
