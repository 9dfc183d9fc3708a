// What the client commands (`chat`, `tasks`, `run`) share: the I/O they write to,
// the connection flags (--server, --api-key and their env), and one place that
// turns an SDK error into one sentence and an exit code.

import type { EventEmitter } from 'node:events';
import { AuthError, LeashApiError, LeashClient, LeashConnectionError, ValidationError } from '../client/index.ts';

/** Exit codes of the client commands (documented in each --help). */
export const EXIT = {
  ok: 0,
  /** `run` / `watch`: the task failed or was cancelled; any other command: the request failed. */
  failed: 1,
  usage: 2,
  unreachable: 3,
  auth: 4,
  /** Ctrl+C that stopped waiting (the shell's convention for SIGINT). */
  interrupted: 130,
} as const;

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';

/**
 * A failure that main() prints as one line and turns into `exitCode` (main only
 * reads `exitCode`, like serve's UsageError; serve.ts is not imported here because
 * it loads the whole server, half a second a client command has no use for).
 */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export interface OutStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Where a command reads and writes; tests pass their own. */
export interface Io {
  stdout: OutStream & NodeJS.WritableStream;
  stderr: OutStream & NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  /** Source of SIGINT (the process; an EventEmitter in tests). */
  signals: Pick<EventEmitter, 'on' | 'off'>;
}

export function processIo(): Io {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, signals: process };
}

/** parseArgs options every client command takes. */
export const CONNECTION_OPTIONS = {
  server: { type: 'string' },
  'api-key': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const CONNECTION_HELP = `Connection (environment variable in brackets):
  --server URL     the leash server [LEASH_URL] (default ${DEFAULT_SERVER})
  --api-key KEY    API key sent as a Bearer token [LEASH_API_KEY]`;

export const EXIT_HELP = `Exit codes: 0 ok · 1 failed (for run/watch: the task failed or was cancelled) · 2 usage ·
            3 server unreachable · 4 API key missing or refused · 130 stopped waiting with Ctrl+C`;

export interface Connection {
  client: LeashClient;
  url: string;
  hasKey: boolean;
}

/** The client for --server/--api-key, falling back to LEASH_URL/LEASH_API_KEY. */
export function connect(
  values: { server?: string | undefined; 'api-key'?: string | undefined },
  env: NodeJS.ProcessEnv,
): Connection {
  const url = (values.server ?? env.LEASH_URL?.trim()) || DEFAULT_SERVER;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw usage(`Invalid server URL "${url}": expected e.g. ${DEFAULT_SERVER}.`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw usage(`Invalid server URL "${url}": use http:// or https://.`);
  }
  const key = (values['api-key'] ?? env.LEASH_API_KEY?.trim()) || undefined;
  const client = new LeashClient({
    baseUrl: url,
    ...(key !== undefined && { apiKey: key }),
    // A CLI should say the server is gone within seconds, not after a minute of retries.
    reconnect: { maxRetries: 4, initialDelayMs: 200, maxDelayMs: 1000 },
  });
  return { client, url: client.baseUrl, hasKey: key !== undefined };
}

/** The network error's code (ECONNREFUSED, ENOTFOUND, …) buried in fetch's causes, else the deepest message. */
function networkCode(err: unknown): string | null {
  let deepest: string | null = null;
  for (let e: unknown = err, i = 0; e !== null && e !== undefined && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    if (i > 0 && e instanceof Error && e.message !== '') deepest = e.message;
  }
  return deepest;
}

/** One sentence and an exit code for an error from the SDK; anything else is returned unchanged. */
export function explain(err: unknown, conn: Pick<Connection, 'url' | 'hasKey'>): unknown {
  if (err instanceof CliError) return err;
  if (err instanceof LeashConnectionError) {
    const code = networkCode(err);
    return new CliError(
      `Cannot reach the leash server at ${conn.url}${code ? ` (${code})` : ''}: start it with \`leash serve\`, or point --server / LEASH_URL at a running one.`,
      EXIT.unreachable,
      { cause: err },
    );
  }
  if (err instanceof AuthError) {
    return new CliError(
      conn.hasKey
        ? `The leash server at ${conn.url} refused the API key: check --api-key / LEASH_API_KEY.`
        : `The leash server at ${conn.url} needs an API key: pass --api-key or set LEASH_API_KEY.`,
      EXIT.auth,
      { cause: err },
    );
  }
  if (err instanceof ValidationError) {
    return new CliError(`${err.message}${detailsText(err.details, err.message)}`, EXIT.usage, { cause: err });
  }
  if (err instanceof LeashApiError) {
    return new CliError(err.message.replace(/\.?$/, '.'), EXIT.failed, { cause: err });
  }
  return err;
}

/** The fields a 400 named, except those its message already spells out. */
function detailsText(details: unknown, message: string): string {
  if (!Array.isArray(details) || details.length === 0) return '';
  const parts = details
    .map((d: unknown) => {
      const { path, message } = (d ?? {}) as { path?: unknown; message?: unknown };
      if (typeof message !== 'string') return null;
      return typeof path === 'string' && path !== '' ? `${path}: ${message}` : message;
    })
    .filter((s): s is string => s !== null && !message.includes(s));
  return parts.length === 0 ? '' : ` (${parts.join('; ')})`;
}

/** Runs `fn`, turning SDK errors into CliErrors for main() to print. */
export async function withErrors<T>(conn: Pick<Connection, 'url' | 'hasKey'>, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw explain(err, conn);
  }
}

/** A mistake in how the command was invoked: exit 2. */
export function usage(message: string): CliError {
  return new CliError(message, EXIT.usage);
}

/** A parseArgs failure as a usage error followed by the command's help. */
export function parseFailure(err: unknown, help: string): CliError {
  return usage(`${(err as Error).message}\n\n${help}`);
}
