// What the parts of one Runtime share: the node's store, log, event log, task types,
// limits and its runs (cancel.ts, scheduler.ts, cluster.ts and create.ts each take it).

import type { Logger } from 'pino';
import type { Store } from '../store/store.ts';
import type { ActiveRun } from './active-run.ts';
import type { AnyTaskDefinition } from './define-task.ts';
import type { EventLog } from './event-log.ts';
import type { Limits, RuntimeObserver } from './options.ts';

export interface RuntimeNode {
  readonly nodeId: string;
  readonly store: Store;
  readonly log: Logger;
  readonly events: EventLog;
  readonly observer: RuntimeObserver;
  readonly defs: Map<string, AnyTaskDefinition>;
  readonly limits: Limits;
  /** This node's runs by task id (a run lost or handed back stays until its handler returns). */
  readonly active: Map<string, ActiveRun>;
}

/** The run of `id` on this node, unless it has left it (lost or handed back). */
export function liveRun(node: RuntimeNode, id: string): ActiveRun | undefined {
  const run = node.active.get(id);
  return run && run.detached === null ? run : undefined;
}

/** Other nodes' readers of `id` hear that its events changed (one node: nobody to tell). */
export function announceCrossNode(store: Store, id: string): void {
  if (store.kind !== 'sqlite') void store.notifier.publish('events', id).catch(() => {});
}

/** Types whose tasks resume from their checkpoint on another node rather than fail. */
export function resumableTypes(node: RuntimeNode): string[] {
  return [...node.defs.values()].filter((d) => d.resume).map((d) => d.type);
}
