// Row ⇄ wire-shape mapping. JSON columns are TEXT; SQL NULL and JSON null both read as null.

import type { CancelReason, Task, TaskError, TaskEvent, TaskStatus } from '../../runtime/types.ts';
import type { Message, MessageRole, MessageStatus, Thread } from '../store.ts';

export interface TaskRow {
  num: number;
  id: string;
  type: string;
  owner: string;
  status: TaskStatus;
  priority: number;
  thread_id: string | null;
  progress: number | null;
  progress_message: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  deadline_at: string | null;
  cancel_reason: CancelReason | null;
  cancel_requested_at: string | null;
  idempotency_key: string | null;
  input_hash: string;
  last_seq: number;
  node_id: string | null;
  lease_until: string | null;
  attempt: number;
  error: string | null;
  input: string;
  result: string | null;
  checkpoint: string | null;
  options: string | null;
  output_text: string;
}

export interface EventRow {
  task_id: string;
  seq: number;
  type: string;
  created_at: string;
  data: string;
}

export interface ThreadRow {
  num: number;
  id: string;
  owner: string;
  created_at: string;
  metadata: string;
  busy: number;
}

export interface MessageRow {
  id: string;
  thread_id: string;
  seq: number;
  role: MessageRole;
  status: MessageStatus;
  task_id: string | null;
  created_at: string;
  usage: string | null;
  content: string;
}

/** JSON text for a column; `undefined` (no value) is stored as SQL NULL. */
export const toJson = (v: unknown): string | null => (v === undefined ? null : (JSON.stringify(v) ?? null));

export const fromJson = (s: string | null): unknown => (s === null ? null : JSON.parse(s));

export function toTask(r: TaskRow): Task {
  return {
    id: r.id,
    type: r.type,
    status: r.status,
    progress: r.progress,
    progress_message: r.progress_message,
    input: fromJson(r.input),
    result: fromJson(r.result),
    output_text: r.output_text,
    error: fromJson(r.error) as TaskError | null,
    cancel:
      r.cancel_reason !== null && r.cancel_requested_at !== null
        ? { reason: r.cancel_reason, requested_at: r.cancel_requested_at }
        : null,
    priority: r.priority,
    thread_id: r.thread_id,
    owner: r.owner,
    created_at: r.created_at,
    started_at: r.started_at,
    ended_at: r.ended_at,
    deadline_at: r.deadline_at,
  };
}

export function toEvent(r: EventRow): TaskEvent {
  return {
    task_id: r.task_id,
    seq: r.seq,
    type: r.type,
    data: JSON.parse(r.data),
    created_at: r.created_at,
  } as TaskEvent;
}

export function toThread(r: ThreadRow): Thread {
  return {
    id: r.id,
    owner: r.owner,
    status: r.busy ? 'busy' : 'idle',
    created_at: r.created_at,
    metadata: JSON.parse(r.metadata) as Record<string, unknown>,
  };
}

export function toMessage(r: MessageRow): Message {
  return {
    id: r.id,
    thread_id: r.thread_id,
    seq: r.seq,
    role: r.role,
    content: r.content,
    status: r.status,
    task_id: r.task_id,
    created_at: r.created_at,
    usage: fromJson(r.usage) as Message['usage'],
  };
}

/** Opaque page cursors: base64url of `<kind>:<num>`, so a task cursor is refused for threads. */
export function encodeCursor(kind: 't' | 'h', num: number): string {
  return Buffer.from(`${kind}:${num}`).toString('base64url');
}

/** The `num` in a cursor, or null when the cursor is not one of ours. */
export function decodeCursor(kind: 't' | 'h', cursor: string): number | null {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const m = /^([th]):(\d{1,15})$/.exec(text);
  if (!m || m[1] !== kind) return null;
  return Number(m[2]);
}

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 200;

export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_PAGE_LIMIT;
  return Math.min(MAX_PAGE_LIMIT, Math.max(1, Math.floor(limit)));
}
