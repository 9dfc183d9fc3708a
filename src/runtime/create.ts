// Creating a task: the request checked against its type (input schema, models, priority,
// run options, the owner's thread), the result cache, the store's create, and an eager
// start when this node has a free slot (the store starts it for this node in the
// create's own commit, saving the claim's round trip).

import { createHash } from 'node:crypto';
import type { ZodType } from 'zod';
import type { ModelRegistry } from '../models/model.ts';
import type { TaskRunOptions } from '../store/store.ts';
import { LeashError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { CancelReason, CreateTaskRequest, Task } from '../core/types.ts';
import { ISOLATIONS, nowIso } from '../core/types.ts';
import { backlogFull } from './active-run.ts';
import type { Cancels } from './cancel.ts';
import { modelsOfInput, type AnyTaskDefinition } from './define-task.ts';
import { announceCrossNode, type RuntimeNode } from './node.ts';
import type { Scheduler } from './scheduler.ts';

export interface CreateOptions {
  /**
   * Asked once the task exists, before it can start: a reason stops it before its
   * handler runs (a WebSocket cancel that came with its run) — an eagerly started task
   * is cancelled before its handler is called, a queued one is cancelled before this
   * node asks for a claim.
   */
  cancelled?: () => CancelReason | null;
}

export async function createTask(
  node: RuntimeNode,
  parts: { models: ModelRegistry; scheduler: Scheduler; cancels: Cancels },
  owner: string,
  req: CreateTaskRequest,
  opts: CreateOptions,
): Promise<{ task: Task; created: boolean }> {
  const { store, events, limits, defs } = node;
  const { scheduler, cancels } = parts;
  if (!scheduler.accepting)
    throw new LeashError('shutting_down', 'The server is shutting down and takes no new tasks.');
  const def = defs.get(req.type);
  // Another owner's type (a remote worker's) is as unknown as a name nobody declared.
  const schema = def === undefined ? null : def.forOwner ? def.forOwner(owner) : def.input;
  if (!def || !schema) {
    const known = [...defs.values()].filter((d) => !d.forOwner || d.forOwner(owner) !== null).map((d) => d.type);
    throw new LeashError('unknown_task_type', `Unknown task type "${req.type}". Known types: ${known.join(', ')}.`);
  }
  const parsed = (schema as ZodType).safeParse(req.input);
  if (!parsed.success) {
    throw new LeashError('invalid_request', `Invalid input for task type "${req.type}".`, {
      details: parsed.error.issues.map((i) => ({
        path: ['input', ...i.path.map(String)].join('.'),
        message: i.message,
      })),
    });
  }
  // Before anything is stored or run: a model name outside the allowlist costs nothing.
  for (const spec of modelsOfInput(def, parsed.data)) parts.models.check(spec);
  const priority = req.priority ?? 0;
  if (!Number.isInteger(priority) || priority < -100 || priority > 100) {
    throw new LeashError('invalid_request', 'priority must be an integer from -100 to 100.', {
      details: [{ path: 'priority', message: 'must be an integer from -100 to 100' }],
    });
  }
  const options = runOptions(def, req);
  // Checked after the input (bad input is a 4xx whatever the store's state).
  if (events.overloaded) throw backlogFull(events.pendingCount);
  if (req.thread_id != null && !(await store.getThread(req.thread_id, owner))) {
    throw new LeashError('not_found', `Thread ${req.thread_id} not found.`);
  }
  const input: unknown = parsed.data;
  const inputHash = hashInput(req.type, input);
  if (def.cache) {
    const since = new Date(Date.now() - def.cache.ttlMs).toISOString();
    const cached = await store.findCachedResult(owner, req.type, inputHash, since);
    if (cached) return { task: cached, created: false };
  }
  const createdAt = new Date();
  const deadlineMs = req.deadline_ms ?? def.deadlineMs ?? limits.defaultDeadlineMs;
  // A free slot here: ask the store to start the task for this node in the create's
  // own commit (see CreateTaskOptions.startOn), saving the claim's round trip. The
  // slot is held for it like a claim's; other creates in flight do not stop it (on
  // PostgreSQL those of an owner far below its limit share the owner's lock, migration
  // 5; nearer the limit one may find the lock taken, and its task is queued).
  const eager = scheduler.holdEagerSlot(req.type, owner);
  const creating = store.createTask(
    {
      id: req.id ?? newId('task'),
      type: req.type,
      owner,
      input,
      input_hash: inputHash,
      priority,
      thread_id: req.thread_id ?? null,
      deadline_at: new Date(createdAt.getTime() + deadlineMs).toISOString(),
      created_at: createdAt.toISOString(),
      idempotency_key: req.idempotency_key ?? null,
      options,
    },
    {
      maxQueuedPerOwner: limits.maxQueuedPerOwner,
      ...(eager && {
        startOn: {
          nodeId: node.nodeId,
          maxRunningPerOwner: limits.maxRunningPerOwner,
          leaseMs: limits.leaseMs,
          now: createdAt.toISOString(),
        },
      }),
    },
  );
  // An eagerly started task runs from here, before the promise stop() waits on settles
  // (as with a claim, its task must not start after stop() has looked).
  const created = creating.then((r) => {
    if (r.kind === 'created' && r.started) scheduler.execute(r.started, opts.cancelled?.() ?? null);
    return r;
  });
  const res = eager
    ? await scheduler.eagerSettled(created, (r) => r.kind === 'created' && r.started !== undefined)
    : await created;
  if (res.kind === 'created' && res.started) return { task: { ...res.started.task }, created: true };
  if (res.kind === 'queue_full') {
    throw new LeashError(
      'queue_full',
      `You have ${res.queued} queued tasks (limit ${limits.maxQueuedPerOwner}). Wait for some to finish or cancel them.`,
    );
  }
  if (res.kind === 'created') {
    // Stopped before anyone could claim it (no claim has been asked for it yet here).
    const stop = opts.cancelled?.() ?? null;
    if (stop !== null) {
      const asked = performance.now();
      const c = await store.cancelQueued(res.task.id, stop, nowIso());
      if (c) {
        events.poke(c.id);
        announceCrossNode(store, c.id);
        cancels.endedQueued(c, stop, performance.now() - asked);
        return { task: c, created: true };
      }
    }
    scheduler.schedulePump();
    if (store.kind !== 'sqlite') void store.notifier.publish('wakeup', '').catch(() => {});
  }
  return { task: res.task, created: res.kind === 'created' };
}

/** The per-task run options of a create request, checked against its type. */
function runOptions(def: AnyTaskDefinition, req: CreateTaskRequest): TaskRunOptions | null {
  const bad = (path: string, message: string): LeashError =>
    new LeashError('invalid_request', `${path} ${message}.`, { details: [{ path, message }] });
  if (req.isolation !== undefined) {
    if (!(ISOLATIONS as readonly string[]).includes(req.isolation))
      throw bad('isolation', 'must be inline, worker or process');
    if (req.isolation !== 'inline' && !def.module) {
      throw bad(
        'isolation',
        `can't be ${req.isolation} for task type "${def.type}": its definition names no module to load in isolation`,
      );
    }
  }
  if (req.grace_ms !== undefined && (!Number.isInteger(req.grace_ms) || req.grace_ms < 0 || req.grace_ms > 600_000)) {
    throw bad('grace_ms', 'must be an integer from 0 to 600000');
  }
  if (req.isolation === undefined && req.grace_ms === undefined) return null;
  return {
    ...(req.isolation !== undefined && { isolation: req.isolation }),
    ...(req.grace_ms !== undefined && { grace_ms: req.grace_ms }),
  };
}

/** sha256 of type + canonical JSON (sorted keys), for the result cache. */
export function hashInput(type: string, input: unknown): string {
  return createHash('sha256').update(type).update('\0').update(canonicalJson(input)).digest('hex');
}

function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(v as object).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
}
