// The security settings of `leash serve` from the environment (SECURITY.md): API
// keys (inline or from a file, so they need not sit in the process environment or
// a shell history), the browser rules, /metrics exposure and the stream cap.

import { readFileSync } from 'node:fs';
import type { SecurityOptions } from '../server/app.ts';
import { parseApiKeys } from '../server/auth.ts';
import { normalizeOrigin } from '../server/browser-guard.ts';
import { UsageError } from './usage-error.ts';

const list = (raw: string | undefined): string[] =>
  (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

/**
 * `LEASH_API_KEYS="key:owner,…"` or `LEASH_API_KEYS_FILE=path` (one `key:owner` per
 * line or comma-separated; blank lines and `#` comments ignored), never both.
 */
export function apiKeysFromEnv(env: NodeJS.ProcessEnv): Map<string, string> {
  const inline = env.LEASH_API_KEYS?.trim();
  const file = env.LEASH_API_KEYS_FILE?.trim();
  if (inline && file) throw new UsageError('Set LEASH_API_KEYS or LEASH_API_KEYS_FILE, not both.');
  let spec = inline;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        `Cannot read LEASH_API_KEYS_FILE "${file}": ${(err as NodeJS.ErrnoException).code ?? 'error'}.`,
      );
    }
    spec = text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
      .join(',');
    if (spec === '') throw new UsageError(`LEASH_API_KEYS_FILE "${file}" holds no "key:owner" entry.`);
  }
  try {
    return parseApiKeys(spec);
  } catch (err) {
    const msg = (err as Error).message;
    throw new UsageError(file ? msg.replace('LEASH_API_KEYS entry', 'LEASH_API_KEYS_FILE entry') : msg);
  }
}

export function securityFromEnv(env: NodeJS.ProcessEnv): SecurityOptions {
  const origins = list(env.LEASH_ALLOWED_ORIGINS);
  for (const o of origins) {
    if (normalizeOrigin(o) === null) {
      throw new UsageError(
        `Invalid LEASH_ALLOWED_ORIGINS entry "${o}": expected an origin such as http://localhost:5173.`,
      );
    }
  }
  const hosts = list(env.LEASH_ALLOWED_HOSTS);
  for (const h of hosts) {
    if (!/^[A-Za-z0-9.-]{1,253}$/.test(h)) {
      throw new UsageError(
        `Invalid LEASH_ALLOWED_HOSTS entry "${h}": expected a host name without port, e.g. leash.internal.`,
      );
    }
  }
  const metrics = env.LEASH_METRICS_PUBLIC?.trim().toLowerCase();
  if (metrics !== undefined && metrics !== '' && !['0', '1', 'true', 'false'].includes(metrics)) {
    throw new UsageError(`Invalid LEASH_METRICS_PUBLIC="${metrics}": expected 1 or 0.`);
  }
  const out: SecurityOptions = {
    allowedHosts: hosts,
    allowedOrigins: origins,
    metricsPublic: metrics === '1' || metrics === 'true',
  };
  const streams = env.LEASH_MAX_STREAMS_PER_OWNER?.trim();
  if (streams) {
    if (!/^\d{1,9}$/.test(streams) || Number(streams) < 1) {
      throw new UsageError(`Invalid LEASH_MAX_STREAMS_PER_OWNER="${streams}": expected an integer ≥ 1.`);
    }
    out.maxStreamsPerOwner = Number(streams);
  }
  return out;
}
