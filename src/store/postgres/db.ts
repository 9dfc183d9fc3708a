// The PostgreSQL connection pool every operation of the store runs on: one statement
// (`q`, named statements prepared once per pooled connection) or a short transaction
// (`tx`) on one connection; a failure to reach the server becomes `store_unavailable`.

import type pg from 'pg';
import { LeashError } from '../../core/errors.ts';

export type CheckedOutClient = pg.PoolClient & { done(err?: Error | boolean): void };

export class PgDb {
  readonly #pool: pg.Pool;
  #closed = false;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** The pool, or `store_closed` once the store is closed. */
  live(): pg.Pool {
    if (this.#closed) throw new LeashError('store_closed', 'the PostgreSQL store is closed');
    return this.#pool;
  }

  /** Runs one statement; `name` makes it a prepared statement on each connection. */
  async q<R extends pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
    name?: string,
  ): Promise<pg.QueryResult<R>> {
    const pool = this.live();
    try {
      return await pool.query<R>(name === undefined ? { text, values } : { name, text, values });
    } catch (e) {
      throw unavailable(e);
    }
  }

  /** A transaction on one pooled connection. */
  async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    try {
      return await this.#txOn(fn);
    } catch (e) {
      throw unavailable(e);
    }
  }

  async #txOn<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.checkout();
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      c.done();
      return out;
    } catch (e) {
      try {
        await c.query('ROLLBACK');
        c.done();
      } catch (rollbackError) {
        c.done(rollbackError as Error); // a broken connection is destroyed, not reused
      }
      throw e;
    }
  }

  /**
   * A pooled client for several statements. pg-pool takes its idle error listener off
   * a client it hands out, and a checked-out client whose connection dies (PostgreSQL
   * shutting down) emits 'error': unheard, that would end the process. This one is
   * heard until the client goes back, and a client that failed is destroyed then.
   */
  async checkout(): Promise<CheckedOutClient> {
    const c = await this.live().connect();
    let failed: Error | null = null;
    const onError = (err: Error): void => {
      failed ??= err;
    };
    c.on('error', onError);
    return Object.assign(c, {
      done: (err?: Error | boolean): void => {
        const broken = err || failed;
        // A broken client is thrown away, and its connection may still report its end:
        // keep listening. A healthy one goes back to the pool, which listens again.
        if (!broken) c.off('error', onError);
        c.release(broken || undefined);
      },
    });
  }

  /** Runs `first` (best effort), then ends the pool; every later call is `store_closed`. Once only. */
  async close(first: () => Promise<void>): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await first().catch(() => {});
    await this.#pool.end().catch(() => {});
  }
}

/**
 * A failure to reach PostgreSQL (down, restarting, network) as `store_unavailable`
 * (HTTP 503: try again), so a restart is not reported as an internal error. The pool
 * replaces broken connections by itself; the caller's retry or next poll succeeds
 * once the server is back. Any other error (a bad statement, a constraint) is as it was.
 */
export function unavailable(e: unknown): unknown {
  if (e instanceof LeashError || !isConnectionError(e)) return e;
  return new LeashError('store_unavailable', `PostgreSQL is unavailable: ${(e as Error).message}`, { cause: e });
}

// SQLSTATE class 08 (connection exception) is matched by prefix; then admin / crash
// shutdown, "starting up", too many connections; then socket errors.
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300']);
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
// node-postgres's own connection errors carry no code.
const CLIENT_MESSAGES =
  /^Connection terminated|is not queryable|timeout exceeded when trying to connect|^Query read timeout/;

function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (code.startsWith('08') || UNAVAILABLE_CODES.has(code) || SOCKET_CODES.has(code))) {
    return true;
  }
  return e instanceof Error && CLIENT_MESSAGES.test(e.message);
}
