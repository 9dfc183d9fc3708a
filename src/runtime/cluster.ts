// The cluster side of a node: the leases on its runs (renewed a third of a lease
// apart; a renewal also carries stop requests whose notification was missed), runs
// lost to another node or handed back, the reaping of queued tasks past their
// deadline and of stopped nodes' tasks, and the hand-back on stop. (Cancels between
// nodes, NOTIFY `cancel`, are in cancel.ts.)

import { nowIso } from '../core/types.ts';
import type { Cancels } from './cancel.ts';
import { announceCrossNode, resumableTypes, type RuntimeNode } from './node.ts';

export const FAR_FUTURE = '9999-12-31T23:59:59.999Z';

export class Cluster {
  readonly #node: RuntimeNode;
  readonly #cancels: Cancels;
  readonly #wakeup: () => void;
  /** Lease renewals fail (the store is unreachable); and when they last started working again (Date.now()). */
  #renewFailing = false;
  #storeBackAt = 0;
  #reaping = false;
  #reapFailing = false;

  constructor(node: RuntimeNode, cancels: Cancels, wakeup: () => void) {
    this.#node = node;
    this.#cancels = cancels;
    this.#wakeup = wakeup;
  }

  /**
   * On start: SQLite is one node, whatever was running when the last process died is
   * lost. Several nodes: only tasks whose lease ran out.
   */
  async recoverOnStart(): Promise<void> {
    const { store, log, events } = this.#node;
    const now = nowIso();
    const recovered = await store.recoverLost({
      expiredBefore: store.kind === 'sqlite' ? FAR_FUTURE : now,
      resumableTypes: resumableTypes(this.#node),
      now,
    });
    for (const t of recovered) {
      log.warn({ task_id: t.id, status: t.status }, 'recovered task of a stopped node');
      events.poke(t.id);
    }
  }

  /** Heartbeat of this node's leases; acts on what the store says about its tasks. */
  async renew(): Promise<void> {
    const { store, active, nodeId, limits, log } = this.#node;
    // Ended tasks too while their last events are being written (their lease must hold
    // until then); one reported lost after its end is ignored by detach.
    const held = [...active].filter(([, a]) => a.detached === null).map(([id]) => id);
    const r = await store.renewLeases(nodeId, limits.leaseMs, nowIso(), held).catch((err: unknown) => {
      this.#renewFailing = true;
      throw err;
    });
    if (this.#renewFailing) {
      this.#renewFailing = false;
      this.#storeBackAt = Date.now();
    }
    for (const { id, reason } of r.cancelling) {
      const run = active.get(id);
      if (run && run.detached === null && run.state === 'running') {
        log.info({ task_id: id, reason }, 'stop request found at lease renewal (its notification was missed)');
        this.#cancels.stopRun(run, reason);
      }
    }
    for (const id of r.lost) this.detach(id, 'lost', false);
  }

  /**
   * This node stops owning a running task: its handler is aborted, its unwritten
   * events dropped, and nothing more is written for it. `evenIfEnded`: the store
   * refused the task's final events, so an ended task is detached too.
   */
  detach(id: string, why: 'lost' | 'released', evenIfEnded: boolean): void {
    this.#node.active.get(id)?.detach(why, evenIfEnded);
  }

  /** The reaper: queued tasks past their deadline end `cancelled` (reason `deadline`). */
  async reapQueued(): Promise<void> {
    if (this.#reaping) return;
    this.#reaping = true;
    const { store, events, log } = this.#node;
    try {
      const ended = await store.expireQueued(nowIso());
      this.#reapFailing = false;
      for (const t of ended) {
        events.poke(t.id);
        announceCrossNode(store, t.id);
        // stopped_ms: how long after its deadline it was ended.
        this.#cancels.endedQueued(t, 'deadline', t.deadline_at ? Date.now() - Date.parse(t.deadline_at) : 0);
      }
    } catch (err) {
      // Once per outage (the store is unreachable), not four times a second.
      if (!this.#reapFailing) log.error({ err }, 'ending queued tasks past their deadline failed');
      this.#reapFailing = true;
    } finally {
      this.#reaping = false;
    }
  }

  /** Several nodes: the tasks of nodes whose lease ran out go back to the queue (or fail). */
  async reapExpired(): Promise<void> {
    const { store, events, limits } = this.#node;
    // Our own leases first: a node that was slow (a stall, a database outage) must
    // not reap its own tasks before it has had the chance to renew them.
    await this.renew();
    // Leases that ran out while the store was unreachable (a PostgreSQL restart) say
    // nothing about their nodes: none could renew. Give every node a full lease
    // after the outage to renew before judging it, or live nodes lose their tasks.
    if (Date.now() - this.#storeBackAt < limits.leaseMs) return;
    const lost = await store.recoverLost({
      expiredBefore: nowIso(),
      resumableTypes: resumableTypes(this.#node),
      now: nowIso(),
    });
    for (const t of lost) {
      events.poke(t.id);
      announceCrossNode(store, t.id);
    }
    if (lost.length > 0) this.#wakeup();
  }

  /** Several nodes, on stop: this node's remaining tasks go to the others now, not after the lease. */
  async handBack(): Promise<void> {
    const { store, events, log, nodeId } = this.#node;
    try {
      const now = nowIso();
      const handed = await store.recoverLost({ nodeId, resumableTypes: resumableTypes(this.#node), now });
      for (const t of handed) {
        log.info({ task_id: t.id, status: t.status }, 'handed back on shutdown');
        events.poke(t.id);
        announceCrossNode(store, t.id);
      }
      if (handed.some((t) => t.status === 'queued')) await store.notifier.publish('wakeup', '');
    } catch (err) {
      log.error({ err }, 'handing tasks back on shutdown failed; their leases will run out instead');
    }
  }
}
