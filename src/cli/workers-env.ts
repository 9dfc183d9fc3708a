// Remote-worker settings from the environment (docs/workers.md).

import type { HubOptions } from '../server/workers/hub.ts';
import { TYPE_NAME_RE } from '../server/workers/protocol.ts';
import { UsageError } from './usage-error.ts';

export function workersFromEnv(env: NodeJS.ProcessEnv): HubOptions & { types?: string[] } {
  const out: HubOptions & { types?: string[] } = {};
  const ms = (name: string, min: number): number | undefined => {
    const v = env[name]?.trim();
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`Invalid ${name}="${v}": expected an integer ≥ ${min}.`);
    return n;
  };
  const lease = ms('LEASH_WORKER_LEASE_MS', 200);
  const ping = ms('LEASH_WORKER_PING_MS', 50);
  const accept = ms('LEASH_WORKER_ACCEPT_MS', 100);
  if (lease !== undefined) out.leaseMs = lease;
  if (ping !== undefined) out.pingMs = ping;
  if (accept !== undefined) out.acceptMs = accept;
  const types = env.LEASH_WORKER_TYPES?.trim();
  if (types) {
    out.types = types.split(',').map((t) => t.trim());
    for (const t of out.types) {
      if (!TYPE_NAME_RE.test(t)) throw new UsageError(`LEASH_WORKER_TYPES: "${t}" is not a task type name.`);
    }
  }
  return out;
}
