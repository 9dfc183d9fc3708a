// The worker hub: connected remote workers and the attempts they run.
//
// A task type served by remote workers is an ordinary task type of the runtime (same
// queue, limits, leases, deadlines and cancel path) whose handler, instead of running
// here, waits for a connected worker of the task's owner that serves the type and
// has a free slot, pushes it an `assign`, and settles when the worker `finish`es.
// `ctx.signal` aborting pushes `cancel` to the worker; the worker's events go through
// the task's ctx (apply-event.ts), each checked against the attempt's fence. A worker
// silent past its lease loses its attempts: resumed on another worker from their last
// checkpoint when they have one, else `failed` `worker_lost`. Beside it: its records
// (records.ts), the claim filter (claim-filter.ts), the remote types (remote-types.ts).

import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { TaskContext } from '../../runtime/define-task.ts';
import { LeashError } from '../../core/errors.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import { fencedFrames, type EventFrame, type FinishFrame, type HelloFrame, type WorkerInfo } from './protocol.ts';
import { SeqAcks } from './seq-acks.ts';
import { claimFilter, workerInfo } from './claim-filter.ts';
import { applyEvent } from './apply-event.ts';
import type { Attempt, EventAck, Job, WorkerLink, WorkerRecord } from './records.ts';

import { RemoteTypes } from './remote-types.ts';
import {
  DEFAULT_WORKER_ACCEPT_MS,
  DEFAULT_WORKER_LEASE_MS,
  DEFAULT_WORKER_PING_MS,
  type HubOptions,
} from './records.ts';

export type { HubOptions, WorkerLink, WorkerRecord } from './records.ts';

const newToken = (prefix: string): string => `${prefix}_${randomBytes(12).toString('base64url')}`;
const CODE_RE = /^[a-z][a-z0-9_]{0,63}$/;
const MAX_SEEN = 4096;

export class WorkerHub {
  readonly #runtime: Runtime;
  readonly #log: Logger;
  readonly pingMs: number;
  readonly leaseMs: number;
  readonly acceptMs: number;
  readonly #workers = new Map<string, WorkerRecord>();
  readonly #attempts = new Map<string, Attempt>();
  /** Jobs waiting for a worker, oldest first. */
  #waiting: Job[] = [];
  /** The types served remotely (stored, so every node knows them). */
  readonly types: RemoteTypes;
  #timer: NodeJS.Timeout | null = null;

  constructor(runtime: Runtime, log: Logger, opts: HubOptions = {}) {
    this.#runtime = runtime;
    this.#log = log;
    this.pingMs = opts.pingMs ?? DEFAULT_WORKER_PING_MS;
    this.leaseMs = opts.leaseMs ?? DEFAULT_WORKER_LEASE_MS;
    this.acceptMs = opts.acceptMs ?? DEFAULT_WORKER_ACCEPT_MS;
    this.#timer = setInterval(() => this.#tick(), Math.max(50, Math.min(this.pingMs, this.leaseMs / 4)));
    this.#timer.unref();
    runtime.setClaimFilter(() => this.claimFilter());
    this.types = new RemoteTypes(
      runtime,
      log,
      (type, input, ctx) => this.dispatch(type, input, ctx),
      (owner, type, text) => {
        for (const w of this.#workers.values()) if (w.owner === owner && w.schemas.get(type) === text) return w.id;
        return null;
      },
    );
  }

  /**
   * What this node may claim of the remote types: an (owner, type) pair only while a
   * worker here serves it with a slot not yet spoken for (see claim-filter.ts).
   */
  claimFilter(): ReturnType<typeof claimFilter> {
    return claimFilter(this.types.size === 0 ? null : this.types.names(), this.#workers.values(), this.#waiting);
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.types.close();
    for (const w of this.#workers.values()) w.link?.terminate();
  }

  // ── the handler of a remote type ──────────────────────────────────────
  dispatch(type: string, input: unknown, ctx: TaskContext): Promise<unknown> {
    ctx.signal.throwIfAborted();
    return new Promise((resolve, reject) => {
      const job: Job = {
        taskId: ctx.taskId,
        type,
        owner: ctx.owner,
        input,
        ctx,
        deadlineAt: ctx.deadline ? ctx.deadline.toISOString() : null,
        resumeState: ctx.resumeState ?? null,
        fence: 0,
        attempt: null,
        checkpoint: null,
        seqs: new SeqAcks(this.#runtime.eventLog, ctx.taskId),
        passedOver: new Set(),
        settled: false,
        resolve,
        reject,
      };
      ctx.signal.addEventListener('abort', () => this.#onAbort(job), { once: true });
      this.#waiting.push(job);
      this.#pump();
    });
  }

  #settle(job: Job, fn: () => void): void {
    if (job.settled) return;
    job.settled = true;
    job.seqs.settled();
    this.#waiting = this.#waiting.filter((j) => j !== job);
    fn();
  }

  #onAbort(job: Job): void {
    const reason = String((job.ctx.signal.reason as { reason?: string } | undefined)?.reason ?? 'user');
    const a = job.attempt;
    if (a === null) {
      // Never assigned: it never runs anywhere.
      this.#settle(job, () => job.reject(job.ctx.signal.reason));
      return;
    }
    // Assigned: the handler may be running even before its accept arrives, so the task
    // ends when the worker finishes (or, never accepted, when the accept time is up).
    a.cancel = { reason, acked: false };
    a.worker.link?.send({ type: 'cancel', attempt: a.id, reason });
  }

  /** Removes an attempt from its worker (its slot is free) and tells the worker to stop it. */
  #drop(a: Attempt, reason: string): void {
    if (a.acceptTimer) clearTimeout(a.acceptTimer);
    a.acceptTimer = null;
    a.worker.attempts.delete(a.id);
    this.#attempts.delete(a.id);
    if (a.job.attempt === a) a.job.attempt = null;
    a.worker.link?.send({ type: 'cancel', attempt: a.id, reason });
    this.#forget(a.worker);
  }

  /** Assigns waiting jobs to workers with a free slot. */
  #pump(): void {
    if (this.#waiting.length === 0) return;
    const still: Job[] = [];
    for (const job of this.#waiting) {
      if (job.settled) continue;
      const w = this.#pick(job);
      if (!w) {
        still.push(job);
        continue;
      }
      this.#assign(job, w);
    }
    this.#waiting = still;
  }

  #pick(job: Job): WorkerRecord | null {
    let best: WorkerRecord | null = null;
    for (const w of this.#workers.values()) {
      if (w.link === null || w.draining || w.owner !== job.owner || !w.types.has(job.type)) continue;
      const free = w.slots - w.attempts.size;
      if (free <= 0) continue;
      if (best === null) {
        best = w;
        continue;
      }
      const skip = job.passedOver.has(w.id);
      const bestSkip = job.passedOver.has(best.id);
      if (skip !== bestSkip) {
        if (bestSkip) best = w;
        continue;
      }
      if (free > best.slots - best.attempts.size) best = w;
    }
    return best;
  }

  #assign(job: Job, w: WorkerRecord): void {
    job.fence++;
    const a: Attempt = {
      id: newToken('att'),
      fence: job.fence,
      job,
      worker: w,
      accepted: false,
      acceptTimer: null,
      cancel: null,
      seen: new Map(),
      acked: Promise.resolve(),
    };
    job.attempt = a;
    w.attempts.set(a.id, a);
    this.#attempts.set(a.id, a);
    a.acceptTimer = setTimeout(() => {
      a.acceptTimer = null;
      if (a.accepted || job.settled) return;
      this.#drop(a, 'not_accepted');
      if (job.ctx.signal.aborted) {
        this.#settle(job, () => job.reject(job.ctx.signal.reason));
        return;
      }
      this.#log.warn({ task_id: job.taskId, worker_id: w.id }, 'worker did not accept its assignment: reassigned');
      job.passedOver.add(w.id);
      this.#waiting.push(job);
      this.#pump();
    }, this.acceptMs);
    a.acceptTimer.unref();
    w.link!.send({
      type: 'assign',
      attempt: a.id,
      fence: a.fence,
      task: {
        id: job.taskId,
        type: job.type,
        input: job.input,
        deadline_at: job.deadlineAt,
        resume_state: job.checkpoint ? job.checkpoint.state : job.resumeState,
      },
    });
  }

  // ── connections ───────────────────────────────────────────────────────
  /** A worker said hello. Returns its record, or throws a LeashError to send before closing. */
  async connect(
    owner: string,
    hello: HelloFrame,
    link: WorkerLink,
  ): Promise<{ worker: WorkerRecord; kept: string[]; unknown: string[] }> {
    await this.types.loaded;
    const schemas = this.types.accept(owner, hello);
    const w: WorkerRecord = {
      id: newToken('wrk'),
      owner,
      types: new Set(hello.types),
      slots: hello.slots,
      link,
      lastSeen: Date.now(),
      connectedAt: new Date().toISOString(),
      sdk: hello.sdk ?? null,
      draining: false,
      schemas: new Map([...schemas].map(([t, sch]) => [t, sch.text])),
      attempts: new Map(),
    };
    this.#workers.set(w.id, w);
    // Not awaited: nothing may come between this record and its welcome (an assign would).
    void this.types.save(owner, hello, schemas);
    // Attempts the worker still runs from an earlier connection are its own again.
    const kept: string[] = [];
    const unknown: string[] = [];
    for (const r of hello.running ?? []) {
      const a = this.#attempts.get(r.attempt);
      if (!a || a.fence !== r.fence || a.worker.owner !== owner || a.job.settled || a.job.attempt !== a) {
        unknown.push(r.attempt);
        continue;
      }
      const old = a.worker;
      old.attempts.delete(a.id);
      if (old !== w) this.#forget(old);
      a.worker = w;
      a.accepted = true;
      if (a.acceptTimer) clearTimeout(a.acceptTimer);
      a.acceptTimer = null;
      w.attempts.set(a.id, a);
      kept.push(a.id);
    }
    return { worker: w, kept, unknown };
  }

  /** After `welcome` is sent: cancels still owed, attempts the server does not know, and new work. */
  afterWelcome(w: WorkerRecord, unknown: readonly string[]): void {
    for (const id of unknown) w.link?.send({ type: 'cancel', attempt: id, reason: 'unknown_attempt' });
    for (const a of w.attempts.values()) {
      if (a.cancel && !a.cancel.acked) w.link?.send({ type: 'cancel', attempt: a.id, reason: a.cancel.reason });
    }
    this.#pump();
    this.#runtime.wakeup();
  }

  /** The socket closed: the worker keeps its attempts until its lease runs out (it may reconnect). */
  disconnected(w: WorkerRecord): void {
    w.link = null;
    this.#forget(w);
  }

  seen(w: WorkerRecord): void {
    w.lastSeen = Date.now();
  }

  #forget(w: WorkerRecord): void {
    if (w.link === null && w.attempts.size === 0) this.#workers.delete(w.id);
  }

  #tick(): void {
    const now = Date.now();
    for (const w of [...this.#workers.values()]) {
      if (w.link) w.link.send({ type: 'ping' });
      if (now - w.lastSeen > this.leaseMs) this.#lose(w);
    }
  }

  /** Silent past its lease: the worker's attempts go to the usual recovery. */
  #lose(w: WorkerRecord): void {
    this.#log.warn(
      { worker_id: w.id, attempts: w.attempts.size },
      'worker silent past its lease: its attempts are lost',
    );
    const link = w.link;
    w.link = null;
    link?.terminate();
    for (const a of [...w.attempts.values()]) {
      if (a.acceptTimer) clearTimeout(a.acceptTimer);
      w.attempts.delete(a.id);
      this.#attempts.delete(a.id);
      const job = a.job;
      if (job.attempt !== a || job.settled) continue;
      job.attempt = null;
      if (job.ctx.signal.aborted) {
        this.#settle(job, () => job.reject(job.ctx.signal.reason));
      } else if (job.checkpoint) {
        this.#waiting.push(job); // resumed from its last checkpoint, on any worker
      } else {
        this.#settle(job, () =>
          job.reject(
            new LeashError('worker_lost', `The worker running this task (${w.id}) went silent past its lease.`),
          ),
        );
      }
    }
    this.#workers.delete(w.id);
    this.#pump();
  }

  // ── frames of an attempt ──────────────────────────────────────────────
  /** The attempt `attempt` of this worker at `fence`, or null (stale: the frame is refused). */
  #current(w: WorkerRecord, attempt: string, fence: number | null): Attempt | null {
    const a = w.attempts.get(attempt);
    if (!a || a.job.settled || a.job.attempt !== a) return null;
    if (fence !== null && a.fence !== fence) return null;
    return a;
  }

  #fenced(w: WorkerRecord, attempt: string, id?: string): void {
    for (const frame of fencedFrames(attempt, id)) w.link?.send(frame);
  }

  accept(w: WorkerRecord, attempt: string, fence: number): void {
    const a = this.#current(w, attempt, fence);
    if (!a) return this.#fenced(w, attempt);
    a.accepted = true;
    if (a.acceptTimer) clearTimeout(a.acceptTimer);
    a.acceptTimer = null;
  }

  async event(w: WorkerRecord, f: EventFrame): Promise<void> {
    const a = this.#current(w, f.attempt, f.fence);
    if (!a) return this.#fenced(w, f.attempt, f.id);
    const sendAck = (r: EventAck, duplicate: boolean): void =>
      w.link?.send({
        type: 'ack',
        id: f.id,
        attempt: a.id,
        applied: r.applied,
        seq: r.seq,
        ...(duplicate && { duplicate }),
      });
    const before = a.seen.get(f.id);
    if (before !== undefined) {
      // A retry: the same ack again, once the first one is known.
      void before.then((r) => sendAck(r, true));
      return;
    }
    a.accepted = true;
    const ack = applyEvent(a.job, f, () => this.#runtime.eventLog.committedSeq(a.job.taskId) ?? null);
    a.seen.set(f.id, ack);
    if (a.seen.size > MAX_SEEN) a.seen.delete(a.seen.keys().next().value!);
    // Output's seq comes when its delta is appended (end of this loop turn, or later):
    // the ack is sent then, without holding up the frames behind it.
    const sent = ack.then((r) => sendAck(r, false));
    a.acked = Promise.all([a.acked, sent]);
    if (f.kind === 'checkpoint') await sent;
  }

  finish(w: WorkerRecord, f: FinishFrame): void {
    const gone = w.attempts.get(f.attempt);
    if (gone && gone.fence === f.fence && gone.job.settled) {
      // Its task ended without it (detached past its grace): the slot is free again.
      w.attempts.delete(gone.id);
      this.#attempts.delete(gone.id);
      w.link?.send({ type: 'ack', id: f.id, attempt: gone.id, applied: false });
      this.#runtime.wakeup();
      return;
    }
    const a = this.#current(w, f.attempt, f.fence);
    if (!a) {
      // A retried finish of an attempt already settled is acknowledged again.
      const settled = w.attempts.get(f.attempt) === undefined && this.#recentlyFinished.get(f.attempt) === f.id;
      if (settled) w.link?.send({ type: 'ack', id: f.id, attempt: f.attempt, applied: true, duplicate: true });
      else this.#fenced(w, f.attempt, f.id);
      return;
    }
    const job = a.job;
    if (a.acceptTimer) clearTimeout(a.acceptTimer);
    w.attempts.delete(a.id);
    this.#attempts.delete(a.id);
    this.#recentlyFinished.set(a.id, f.id);
    if (this.#recentlyFinished.size > MAX_SEEN)
      this.#recentlyFinished.delete(this.#recentlyFinished.keys().next().value!);
    // After the acks of the events before it (an output ack waits for its delta, which
    // the task's end appends): a worker hears of its attempt's end last.
    void a.acked.then(() => w.link?.send({ type: 'ack', id: f.id, attempt: a.id, applied: true }));
    this.#settle(job, () => {
      if (f.error === undefined) return job.resolve(f.result ?? null);
      if (job.ctx.signal.aborted) return job.reject(job.ctx.signal.reason);
      const code = f.error.code !== undefined && CODE_RE.test(f.error.code) ? f.error.code : 'handler_error';
      job.reject(LeashError.fromJSON({ code, message: f.error.message }));
    });
    this.#pump();
    this.#runtime.wakeup();
  }

  readonly #recentlyFinished = new Map<string, string>();

  drain(w: WorkerRecord): void {
    w.draining = true;
  }

  cancelAck(w: WorkerRecord, attempt: string): void {
    const a = w.attempts.get(attempt);
    if (a?.cancel) a.cancel.acked = true;
  }

  // ── introspection (GET /api/workers, /metrics) ────────────────────────
  list(owner?: string): WorkerInfo[] {
    return [...this.#workers.values()].filter((w) => owner === undefined || w.owner === owner).map(workerInfo);
  }

  /** Jobs waiting for a worker on this node. */
  get waiting(): number {
    return this.#waiting.length;
  }
}
