// Row ⇄ wire-shape mapping for PostgreSQL. node-postgres hands back timestamptz as
// Date, bigint as string and json already parsed; the wire shapes want ISO strings,
// numbers and plain values.

import type { CancelReason, Task, TaskError, TaskEvent, TaskStatus } from '../../runtime/types.ts';
import type { Message, MessageRole, MessageStatus, Thread } from '../store.ts';

type Ts = Date | null;

export interface PgTaskRow {
  num: string;
  id: string;
  type: string;
  owner: string;
  status: TaskStatus;
  priority: number;
  thread_id: string | null;
  progress: number | null;
  progress_message: string | null;
  created_at: Date;
  started_at: Ts;
  ended_at: Ts;
  deadline_at: Ts;
  cancel_reason: CancelReason | null;
  cancel_requested_at: Ts;
  idempotency_key: string | null;
  input_hash: string;
  last_seq: number;
  node_id: string | null;
  lease_until: Ts;
  attempt: number;
  error: unknown;
  input: unknown;
  result: unknown;
  checkpoint: unknown;
  options: unknown;
  output_text: string;
}

export interface PgEventRow {
  task_id: string;
  seq: number;
  type: string;
  created_at: Date;
  data: unknown;
}

export interface PgThreadRow {
  num: string;
  id: string;
  owner: string;
  created_at: Date;
  metadata: Record<string, unknown>;
  busy: boolean;
}

export interface PgMessageRow {
  id: string;
  thread_id: string;
  seq: number;
  role: MessageRole;
  status: MessageStatus;
  task_id: string | null;
  created_at: Date;
  usage: Message['usage'];
  content: string;
}

export const isoOf = (d: Date | null): string | null => (d === null ? null : d.toISOString());

/** JSON text for a json parameter; `undefined` (no value) is SQL NULL. */
export const toJson = (v: unknown): string | null => (v === undefined ? null : (JSON.stringify(v) ?? null));

/**
 * PostgreSQL text cannot hold U+0000 (SQLite can). Text columns get U+FFFD instead;
 * json columns keep the escaped `\u0000` as written, so event data is exact.
 */
export const pgText = (s: string): string => (s.includes('\0') ? s.replaceAll('\0', '\uFFFD') : s);

export function toTask(r: PgTaskRow): Task {
  return {
    id: r.id,
    type: r.type,
    status: r.status,
    progress: r.progress,
    progress_message: r.progress_message,
    input: r.input ?? null,
    result: r.result ?? null,
    output_text: r.output_text,
    error: (r.error ?? null) as TaskError | null,
    cancel:
      r.cancel_reason !== null && r.cancel_requested_at !== null
        ? { reason: r.cancel_reason, requested_at: r.cancel_requested_at.toISOString() }
        : null,
    priority: r.priority,
    thread_id: r.thread_id,
    owner: r.owner,
    created_at: r.created_at.toISOString(),
    started_at: isoOf(r.started_at),
    ended_at: isoOf(r.ended_at),
    deadline_at: isoOf(r.deadline_at),
  };
}

export function toEvent(r: PgEventRow): TaskEvent {
  return {
    task_id: r.task_id,
    seq: r.seq,
    type: r.type,
    data: r.data,
    created_at: r.created_at.toISOString(),
  } as TaskEvent;
}

export function toThread(r: PgThreadRow): Thread {
  return {
    id: r.id,
    owner: r.owner,
    status: r.busy ? 'busy' : 'idle',
    created_at: r.created_at.toISOString(),
    metadata: r.metadata ?? {},
  };
}

export function toMessage(r: PgMessageRow): Message {
  return {
    id: r.id,
    thread_id: r.thread_id,
    seq: r.seq,
    role: r.role,
    content: r.content,
    status: r.status,
    task_id: r.task_id,
    created_at: r.created_at.toISOString(),
    usage: r.usage ?? null,
  };
}
