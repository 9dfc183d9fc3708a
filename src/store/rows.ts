// Row ⇄ wire-shape mapping shared by the SQLite and PostgreSQL stores. The two drivers
// hand back the same columns in different types (row numbers, timestamps, JSON, booleans);
// each store describes its types and how to decode them, and the mapping lives here once.

import type { CancelReason, Task, TaskError, TaskEvent, TaskStatus } from '../core/types.ts';
import type { ClaimedTask, Message, MessageRole, MessageStatus, TaskRunOptions, Thread } from './store.ts';

/** The types a driver returns for each kind of column. */
export interface ColumnTypes {
  num: unknown;
  ts: unknown;
  json: unknown;
  bool: unknown;
}

export interface TaskRowOf<C extends ColumnTypes> {
  num: C['num'];
  id: string;
  type: string;
  owner: string;
  status: TaskStatus;
  priority: number;
  thread_id: string | null;
  progress: number | null;
  progress_message: string | null;
  created_at: C['ts'];
  started_at: C['ts'] | null;
  ended_at: C['ts'] | null;
  deadline_at: C['ts'] | null;
  cancel_reason: CancelReason | null;
  cancel_requested_at: C['ts'] | null;
  /** Set when the task's inline handler was left running past its grace (migration: SQLite 3, PostgreSQL 6). */
  cancel_detached?: C['bool'] | null;
  idempotency_key: string | null;
  input_hash: string;
  last_seq: number;
  node_id: string | null;
  lease_until: C['ts'] | null;
  attempt: number;
  error: C['json'] | null;
  input: C['json'];
  result: C['json'] | null;
  checkpoint: C['json'] | null;
  options: C['json'] | null;
  output_text: string;
}

export interface EventRowOf<C extends ColumnTypes> {
  task_id: string;
  seq: number;
  type: string;
  created_at: C['ts'];
  data: C['json'];
}

export interface ThreadRowOf<C extends ColumnTypes> {
  num: C['num'];
  id: string;
  owner: string;
  created_at: C['ts'];
  metadata: C['json'];
  busy: C['bool'];
}

export interface MessageRowOf<C extends ColumnTypes> {
  id: string;
  thread_id: string;
  seq: number;
  role: MessageRole;
  status: MessageStatus;
  task_id: string | null;
  created_at: C['ts'];
  usage: C['json'] | null;
  content: string;
}

/** How one driver's column values become wire values. */
export interface RowCodec<C extends ColumnTypes> {
  /** A timestamp as an ISO string. */
  iso(v: C['ts']): string;
  /** A JSON column; SQL NULL and JSON null both read as null. */
  json(v: C['json'] | null): unknown;
  /** A thread's metadata column (NOT NULL). */
  metadata(v: C['json']): Record<string, unknown>;
}

/** JSON text for a column or parameter; `undefined` (no value) is SQL NULL. */
export const toJson = (v: unknown): string | null => (v === undefined ? null : (JSON.stringify(v) ?? null));

export interface RowMappers<C extends ColumnTypes> {
  toTask(r: TaskRowOf<C>): Task;
  toEvent(r: EventRowOf<C>): TaskEvent;
  toThread(r: ThreadRowOf<C>): Thread;
  toMessage(r: MessageRowOf<C>): Message;
  /** A task row a claim (or an eager create) just moved to running on this node. */
  toClaimed(r: TaskRowOf<C>): ClaimedTask;
}

export function rowMappers<C extends ColumnTypes>(c: RowCodec<C>): RowMappers<C> {
  const isoOrNull = (v: C['ts'] | null): string | null => (v === null ? null : c.iso(v));
  const toTask = (r: TaskRowOf<C>): Task => ({
    id: r.id,
    type: r.type,
    status: r.status,
    progress: r.progress,
    progress_message: r.progress_message,
    input: c.json(r.input),
    result: c.json(r.result),
    output_text: r.output_text,
    error: c.json(r.error) as TaskError | null,
    cancel:
      r.cancel_reason !== null && r.cancel_requested_at !== null
        ? {
            reason: r.cancel_reason,
            requested_at: c.iso(r.cancel_requested_at),
            ...(r.cancel_detached ? { detached: true as const } : {}),
          }
        : null,
    priority: r.priority,
    thread_id: r.thread_id,
    owner: r.owner,
    created_at: c.iso(r.created_at),
    started_at: isoOrNull(r.started_at),
    ended_at: isoOrNull(r.ended_at),
    deadline_at: isoOrNull(r.deadline_at),
  });
  return {
    toTask,
    toClaimed: (r) => ({
      task: toTask(r),
      lastSeq: r.last_seq,
      checkpoint: c.json(r.checkpoint),
      options: (c.json(r.options) as TaskRunOptions | null) ?? null,
    }),
    toEvent: (r) =>
      ({
        task_id: r.task_id,
        seq: r.seq,
        type: r.type,
        data: c.json(r.data),
        created_at: c.iso(r.created_at),
      }) as TaskEvent,
    toThread: (r) => ({
      id: r.id,
      owner: r.owner,
      status: r.busy ? 'busy' : 'idle',
      created_at: c.iso(r.created_at),
      metadata: c.metadata(r.metadata),
    }),
    toMessage: (r) => ({
      id: r.id,
      thread_id: r.thread_id,
      seq: r.seq,
      role: r.role,
      content: r.content,
      status: r.status,
      task_id: r.task_id,
      created_at: c.iso(r.created_at),
      usage: c.json(r.usage) as Message['usage'],
    }),
  };
}
