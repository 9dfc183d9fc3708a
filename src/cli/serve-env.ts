// What `leash serve` reads from the environment and its flags besides the server's own
// options: runtime limits, rate limit, port, log level, the gguf models directory. A
// malformed value is a UsageError (exit 2) naming the variable, caught at start.

import { statSync } from 'node:fs';
import { ggufLimitsFromEnv, type GgufLimits } from '../models/gguf/spec.ts';
import type { TypeOverride } from '../runtime/runtime.ts';
import { ISOLATIONS, type Isolation } from '../core/types.ts';
import { parseRateLimit, type RateLimitOptions } from '../server/rate-limit.ts';
import { contextCharsFromEnv } from '../threads/context-budget.ts';
import type { StartServerOptions } from './start-server.ts';
import { UsageError } from './usage-error.ts';

const RUNTIME_ENV = {
  LEASH_CONCURRENCY: 'concurrency',
  LEASH_MAX_RUNNING_PER_OWNER: 'maxRunningPerOwner',
  LEASH_MAX_QUEUED_PER_OWNER: 'maxQueuedPerOwner',
  LEASH_SHUTDOWN_GRACE_MS: 'shutdownGraceMs',
  LEASH_LEASE_MS: 'leaseMs',
  LEASH_EVENT_BATCH_MS: 'eventBatchMs',
  LEASH_MAX_UNWRITTEN_EVENTS: 'maxUnwrittenEvents',
} as const;
const RUNTIME_ENV_MIN: Partial<Record<string, number>> = { shutdownGraceMs: 0, leaseMs: 500, eventBatchMs: 0 };

/** Runtime limits from the environment; a value that is not a positive integer is a usage error. */
export function runtimeLimitsFromEnv(env: NodeJS.ProcessEnv): NonNullable<StartServerOptions['runtime']> {
  const out: NonNullable<StartServerOptions['runtime']> = {};
  const int = (name: string, raw: string, min: number): number => {
    if (!/^\d{1,12}$/.test(raw) || Number(raw) < min) {
      throw new UsageError(`Invalid ${name}="${raw}": expected an integer ≥ ${min}.`);
    }
    return Number(raw);
  };
  for (const [name, key] of Object.entries(RUNTIME_ENV)) {
    const raw = env[name]?.trim();
    if (raw) out[key] = int(name, raw, RUNTIME_ENV_MIN[key] ?? 1);
  }
  if (out.eventBatchMs !== undefined && out.eventBatchMs > 60_000) {
    throw new UsageError(`Invalid LEASH_EVENT_BATCH_MS="${out.eventBatchMs}": at most 60000 (ms).`);
  }
  const nodeId = env.LEASH_NODE_ID?.trim();
  if (nodeId) {
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(nodeId)) {
      throw new UsageError(`Invalid LEASH_NODE_ID="${nodeId}": use 1–64 letters, digits, '_', '.', ':' or '-'.`);
    }
    out.nodeId = nodeId;
  }
  const days = env.LEASH_RETENTION_DAYS?.trim();
  if (days) out.retentionMs = int('LEASH_RETENTION_DAYS', days, 1) * 24 * 3_600_000;
  const overrides: Record<string, TypeOverride> = {};
  for (const [type, value] of typePairs('LEASH_ISOLATION', env.LEASH_ISOLATION)) {
    if (!(ISOLATIONS as readonly string[]).includes(value)) {
      throw new UsageError(`Invalid LEASH_ISOLATION entry "${type}=${value}": use inline, worker or process.`);
    }
    (overrides[type] ??= {}).isolation = value as Isolation;
  }
  for (const [type, value] of typePairs('LEASH_GRACE_MS', env.LEASH_GRACE_MS)) {
    (overrides[type] ??= {}).graceMs = int(`LEASH_GRACE_MS (${type})`, value, 0);
  }
  if (Object.keys(overrides).length > 0) out.typeOverrides = overrides;
  return out;
}

/** `type=value,type2=value` (`*` for every type) → pairs; a malformed entry is a usage error. */
function typePairs(name: string, raw: string | undefined): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const entry of (raw ?? '').split(',').map((e) => e.trim())) {
    if (entry === '') continue;
    const m = /^(\*|[a-z][a-z0-9_.-]{0,63})=(\S+)$/.exec(entry);
    if (!m) throw new UsageError(`Invalid ${name} entry "${entry}": expected type=value (or *=value).`);
    out.push([m[1]!, m[2]!]);
  }
  return out;
}

/** `LEASH_RATE_LIMIT`: requests per minute per API key; unset, `0` or `off` = no limit. */
export function rateLimitFromEnv(env: NodeJS.ProcessEnv): RateLimitOptions | undefined {
  try {
    return parseRateLimit(env.LEASH_RATE_LIMIT);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `--port` / PORT: 0 (any free port) to 65535. */
export function parsePort(raw: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
    throw new UsageError(`Invalid port "${raw}": expected a number from 0 to 65535.`);
  }
  return Number(raw);
}

/** LEASH_MODELS_DIR / --models-dir must be a directory when set: a typo is caught at start, not per request. */
export function checkModelsDir(dir: string | undefined): void {
  if (dir === undefined) return;
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new UsageError(`Invalid --models-dir / LEASH_MODELS_DIR "${dir}": not a directory.`);
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** LEASH_LOG_LEVEL (default info): one of pino's levels. */
export function logLevelFromEnv(env: NodeJS.ProcessEnv): string {
  const level = env.LEASH_LOG_LEVEL?.trim() || 'info';
  if (!LOG_LEVELS.includes(level)) {
    throw new UsageError(`Invalid LEASH_LOG_LEVEL "${level}": use one of ${LOG_LEVELS.join(', ')}.`);
  }
  return level;
}

/** LEASH_THREAD_CONTEXT_CHARS is read by each chat run: checked here so a typo stops the start instead. */
export function checkThreadContextEnv(env: NodeJS.ProcessEnv): void {
  try {
    contextCharsFromEnv(env);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** LEASH_MODELS_DIR and LEASH_GGUF_* (models/gguf/spec.ts), a malformed one as a usage error. */
export function ggufLimitsOrUsageError(env: NodeJS.ProcessEnv): GgufLimits {
  try {
    return ggufLimitsFromEnv(env);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
