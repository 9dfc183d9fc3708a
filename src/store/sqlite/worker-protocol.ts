// What SqliteWorkerStore and its thread (worker-entry.ts) say to each other: the list
// of Store methods the thread runs, the messages, and errors across the boundary
// (LeashErrors keep their code and details).

import { LeashError } from '../../core/errors.ts';
import type { Store } from '../store.ts';

/** The names of the Store's methods (its members that are functions). */
export type StoreMethod = {
  [K in keyof Store]: Store[K] extends (...args: never[]) => unknown ? K : never;
}[keyof Store];

/**
 * Every Store method, each run on the thread. The `satisfies` makes the compiler prove
 * the list complete and exact: a method added to Store and not here (or a name here
 * that is not a Store method) is a type error, so the forwarding cannot fall behind.
 */
export const STORE_METHODS = {
  migrate: true,
  close: true,
  ping: true,
  createTask: true,
  getTask: true,
  listTasks: true,
  findActiveTaskIds: true,
  countByStatus: true,
  findCachedResult: true,
  deleteTask: true,
  claimTasks: true,
  renewLeases: true,
  writeEvents: true,
  listEvents: true,
  saveCheckpoint: true,
  cancelQueued: true,
  expireQueued: true,
  markDetached: true,
  requestCancel: true,
  recoverLost: true,
  purgeEnded: true,
  saveRemoteType: true,
  listRemoteTypes: true,
  createThread: true,
  getThread: true,
  listThreads: true,
  deleteThread: true,
  appendMessage: true,
  updateMessage: true,
  listMessages: true,
  listRecentMessages: true,
  countMessagesBefore: true,
  deleteMessagesOfTask: true,
} as const satisfies Record<StoreMethod, true>;

export const isStoreMethod = (name: string): name is StoreMethod => Object.hasOwn(STORE_METHODS, name);

export interface WorkerError {
  leash: boolean;
  name: string;
  message: string;
  code?: string;
  details?: unknown;
}
export type ToStoreWorker = { type: 'call'; id: number; method: StoreMethod; args: unknown[] };
export type FromStoreWorker =
  | { type: 'ready' }
  | { type: 'open-failed'; error: WorkerError }
  | { type: 'result'; id: number; ok: true; value: unknown }
  | { type: 'result'; id: number; ok: false; error: WorkerError };

/** An error as it crosses to the caller's thread. */
export function toWire(e: unknown): WorkerError {
  if (e instanceof LeashError) {
    return { leash: true, name: e.name, message: e.message, code: e.code, details: e.details };
  }
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as { code?: unknown }).code;
  return { leash: false, name: err.name, message: err.message, ...(typeof code === 'string' && { code }) };
}

/** An error from the worker, as the caller would have got it in-thread (LeashErrors keep code and details). */
export function revive(e: WorkerError): Error {
  if (e.leash) return LeashError.fromJSON({ code: e.code!, message: e.message, details: e.details });
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code !== undefined) (err as { code?: string }).code = e.code;
  return err;
}
