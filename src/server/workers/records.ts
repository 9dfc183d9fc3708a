// What the worker hub keeps: each connected (or reconnecting) worker, the attempts it
// runs, and the jobs (tasks of remote types) that wait for a worker or run on one.

import type { TaskContext } from '../../runtime/define-task.ts';
import type { ServerFrame } from './protocol.ts';
import type { SeqAcks } from './seq-acks.ts';

export interface HubOptions {
  /** Interval of the server's pings (ms). */
  pingMs?: number;
  /** A worker silent this long loses its attempts (ms). */
  leaseMs?: number;
  /** An assignment not accepted within this is given to another worker (ms). */
  acceptMs?: number;
}

export const DEFAULT_WORKER_PING_MS = 5_000;
export const DEFAULT_WORKER_LEASE_MS = 15_000;
export const DEFAULT_WORKER_ACCEPT_MS = 5_000;

/** The connection a worker record talks through (a WebSocket in production). */
export interface WorkerLink {
  send(frame: ServerFrame): void;
  /** Drops the connection at once (the worker is silent past its lease, or refused). */
  terminate(): void;
}

/** One task waiting for, or running on, a worker. */
export interface Job {
  taskId: string;
  type: string;
  owner: string;
  input: unknown;
  ctx: TaskContext;
  deadlineAt: string | null;
  resumeState: unknown;
  fence: number;
  attempt: Attempt | null;
  checkpoint: { state: unknown } | null;
  /** The seqs the task's events got, for the acks of event frames. */
  seqs: SeqAcks;
  /** Workers that let an assignment of it time out: others are preferred. */
  passedOver: Set<string>;
  settled: boolean;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

export interface Attempt {
  id: string;
  fence: number;
  job: Job;
  worker: WorkerRecord;
  accepted: boolean;
  acceptTimer: NodeJS.Timeout | null;
  /** Cancel pushed and not yet acknowledged: re-sent on every reconnect. */
  cancel: { reason: string; acked: boolean } | null;
  /** Client ids of the events already applied, with their ack (a retry is acknowledged again, not re-applied). */
  seen: Map<string, Promise<EventAck>>;
  /** Settles once every event ack of the attempt so far was sent: its finish's ack goes after them. */
  acked: Promise<unknown>;
}

export interface WorkerRecord {
  id: string;
  owner: string;
  types: Set<string>;
  slots: number;
  link: WorkerLink | null;
  lastSeen: number;
  connectedAt: string;
  sdk: string | null;
  /** Said `drain`: gets no new assignments. */
  draining: boolean;
  /** The canonical text of the input schema it declared, per type (types it gave none for are absent). */
  schemas: Map<string, string>;
  attempts: Map<string, Attempt>;
}

/** What an event frame's ack says: applied or dropped, and the seq of the event it became. */
export interface EventAck {
  applied: boolean;
  seq: number | null;
}
