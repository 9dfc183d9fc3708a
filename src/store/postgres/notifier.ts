// Cross-node signalling over LISTEN/NOTIFY.
//  - Publishing: this process's subscribers hear it at once (in-process emitter); the
//    other nodes through NOTIFY, sent from the pool in its own short transaction, never
//    inside a store write: a transaction that notifies holds PostgreSQL's single
//    notify-queue lock until its commit is flushed, so notifying inside creates and
//    event writes made all of them commit one at a time (measured: 16 creators spent
//    most of their time waiting on that lock). Here one batch is in flight at a time,
//    everything published meanwhile goes in the next one (duplicates dropped), and its
//    commit does not wait for the WAL flush (a notification is not data; a crash drops
//    the listeners' sessions anyway), so the lock is held for microseconds.
//  - Listening: one dedicated connection (LISTEN needs a session; a pooled client
//    would be handed to someone else). Notifications this process sent are skipped:
//    its own subscribers already heard them.
//  - When that connection breaks it is reopened (backoff) and re-LISTENs; a ping
//    every `pingMs` finds a half-open socket. NOTIFY is fire-and-forget, so anything
//    sent while disconnected is lost: on reconnect subscribers get a `wakeup`, and the
//    runtime's own polls (claim pump, lease renewal for cancels, follow re-reads)
//    are the backstop for the rest.

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { LocalNotifier } from '../sqlite/notifier.ts';
import type { Channel, Notifier } from '../store.ts';

export const PG_CHANNELS: Readonly<Record<Channel, string>> = {
  wakeup: 'leash_wakeup',
  cancel: 'leash_cancel',
  events: 'leash_events',
  types: 'leash_types',
};
const CHANNEL_OF = new Map(Object.entries(PG_CHANNELS).map(([k, v]) => [v, k as Channel]));

/** One batch of notifications, in order; its commit does not wait for the WAL flush (see above). */
const NOTIFY = `WITH s AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))
  SELECT pg_notify(c, p) FROM s, unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(c, p, i) ORDER BY i`;

export interface PgNotifierOptions {
  /** Connection of the LISTEN session (same database as the store). */
  connection: pg.ClientConfig;
  /** Where NOTIFY is sent from (the store's pool). */
  pool: pg.Pool;
  /** Health check of the LISTEN connection (ms). */
  pingMs?: number;
  /** Connection trouble and throwing listeners (never thrown). */
  onError?: (err: unknown, what: string) => void;
}

const defaultOnError = (err: unknown, what: string): void => {
  const e = err instanceof Error ? err : new Error(String(err));
  process.emitWarning(e, { code: 'LEASH_PG_NOTIFIER', detail: what });
};

export class PgNotifier implements Notifier {
  /** Prefix of every payload this instance sends: `<origin>|<payload>`. */
  readonly origin = randomBytes(6).toString('base64url');
  readonly #local: LocalNotifier;
  readonly #connection: pg.ClientConfig;
  readonly #pool: pg.Pool;
  readonly #pingMs: number;
  readonly #onError: (err: unknown, what: string) => void;
  #client: pg.Client | null = null;
  #connecting: Promise<void> | null = null;
  #closed = false;
  #retryMs = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  #pingTimer: NodeJS.Timeout | null = null;
  #reconnects = 0;
  /** Messages not yet sent, keyed by channel and payload (a repeat adds nothing). */
  #outbox = new Map<string, { channel: string; payload: string }>();
  #flushWaiters: Array<() => void> = [];
  #flushScheduled = false;
  #sending: Promise<void> | null = null;

  constructor(opts: PgNotifierOptions) {
    this.#connection = opts.connection;
    this.#pool = opts.pool;
    this.#pingMs = opts.pingMs ?? 5000;
    this.#onError = opts.onError ?? defaultOnError;
    this.#local = new LocalNotifier((err, channel) => this.#onError(err, `listener on channel "${channel}" threw`));
  }

  /** Opens the LISTEN connection; rejects when the first attempt fails (later drops reconnect by themselves). */
  async start(): Promise<void> {
    await this.#connect();
    this.#pingTimer = setInterval(() => void this.#ping(), this.#pingMs);
    this.#pingTimer.unref();
  }

  /** Whether the LISTEN connection is up now. */
  get listening(): boolean {
    return this.#client !== null;
  }

  /** Backend pid of the LISTEN session (tests terminate it), or null while disconnected. */
  get listenerPid(): number | null {
    return (this.#client as (pg.Client & { processID?: number }) | null)?.processID ?? null;
  }

  /** How many times the LISTEN connection was reopened. */
  get reconnects(): number {
    return this.#reconnects;
  }

  publish(channel: Channel, payload: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    void this.#local.publish(channel, payload);
    const msg = { channel: PG_CHANNELS[channel], payload: `${this.origin}|${payload}` };
    this.#outbox.set(`${msg.channel}\n${msg.payload}`, msg);
    const sent = new Promise<void>((resolve) => this.#flushWaiters.push(resolve));
    // While a batch is in flight, the sender takes this one next by itself.
    if (!this.#flushScheduled && this.#sending === null) {
      this.#flushScheduled = true;
      setImmediate(() => void this.#flush());
    }
    return sent;
  }

  subscribe(channel: Channel, listener: (payload: string) => void): () => void {
    return this.#local.subscribe(channel, listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // A send restarted meanwhile (a publish between the loop's end and its finally) too.
    while (this.#sending !== null || this.#outbox.size > 0 || this.#flushWaiters.length > 0) await this.#flush();
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    const c = this.#client;
    this.#client = null;
    await c?.end().catch(() => {});
  }

  /**
   * Sends everything published so far, one statement per batch and one batch at a
   * time, until nothing is left. Best effort: a failure is reported, not thrown: the
   * state change the message is about is already stored, and the receivers' polls
   * pick it up.
   */
  #flush(): Promise<void> {
    this.#flushScheduled = false;
    this.#sending ??= (async () => {
      while (this.#outbox.size > 0 || this.#flushWaiters.length > 0) {
        const batch = [...this.#outbox.values()];
        const waiters = this.#flushWaiters;
        this.#outbox = new Map();
        this.#flushWaiters = [];
        try {
          if (batch.length > 0) {
            // Bounded: a connection that never answers must not hold up every later message.
            await withTimeout(
              this.#pool.query({
                name: 'leash_notify',
                text: NOTIFY,
                values: [batch.map((b) => b.channel), batch.map((b) => b.payload)],
              }),
              this.#pingMs,
              'NOTIFY did not complete',
            );
          }
        } catch (err) {
          this.#onError(err, `NOTIFY of ${batch.length} message(s) failed`);
        } finally {
          for (const w of waiters) w();
        }
      }
    })().finally(() => {
      this.#sending = null;
      // Published between the loop's last check and now: nobody else will send it.
      if (this.#outbox.size > 0 || this.#flushWaiters.length > 0) void this.#flush();
    });
    return this.#sending;
  }

  #connect(): Promise<void> {
    this.#connecting ??= (async () => {
      const client = new pg.Client({ ...this.#connection, application_name: 'leash-listen', keepAlive: true });
      client.on('error', (err) => this.#lost(client, err));
      client.on('end', () => this.#lost(client, null));
      client.on('notification', (msg) => this.#onNotification(msg));
      try {
        await client.connect();
        await client.query(
          Object.values(PG_CHANNELS)
            .map((c) => `LISTEN ${c}`)
            .join('; '),
        );
      } catch (err) {
        client.removeAllListeners('end');
        await client.end().catch(() => {});
        throw err;
      }
      if (this.#closed) {
        await client.end().catch(() => {});
        return;
      }
      this.#client = client;
      this.#retryMs = 0;
    })().finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }

  #onNotification(msg: pg.Notification): void {
    const channel = CHANNEL_OF.get(msg.channel);
    const raw = msg.payload ?? '';
    const bar = raw.indexOf('|');
    if (channel === undefined || bar < 0) return;
    if (raw.slice(0, bar) === this.origin) return; // ours: delivered locally already
    void this.#local.publish(channel, raw.slice(bar + 1));
  }

  /** The LISTEN connection failed or ended: drop it and reopen it with backoff. */
  #lost(client: pg.Client, err: unknown): void {
    if (this.#client !== client) return;
    this.#client = null;
    client.removeAllListeners('end');
    void client.end().catch(() => {});
    if (this.#closed) return;
    this.#onError(err ?? new Error('LISTEN connection ended'), 'LISTEN connection lost; reconnecting');
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retryTimer) return;
    this.#retryMs = Math.min(Math.max(this.#retryMs * 2, 50), 2000);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#connect().then(
        () => {
          if (this.#closed) return;
          this.#reconnects++;
          // Whatever was sent while we were away is lost: have subscribers look again.
          void this.#local.publish('wakeup', '');
        },
        (err: unknown) => {
          this.#onError(err, 'LISTEN reconnect failed; retrying');
          this.#scheduleReconnect();
        },
      );
    }, this.#retryMs);
    this.#retryTimer.unref();
  }

  /** A socket can be dead without an error (a cut network): a query that never answers tells. */
  async #ping(): Promise<void> {
    const c = this.#client;
    if (c === null || this.#closed) return;
    try {
      await withTimeout(c.query('SELECT 1'), this.#pingMs, 'LISTEN connection did not answer a ping');
    } catch (err) {
      this.#lost(c, err);
    }
  }
}

/** `p`, or a rejection "<what> within <ms> ms" after `ms` (the work itself goes on; its outcome is ignored). */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  p.catch(() => {}); // settles after the timeout: not an unhandled rejection
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
