// Cross-node signalling over LISTEN/NOTIFY.
//  - Publishing: this process's subscribers hear it at once (in-process emitter); the
//    other nodes through one NOTIFY per channel message, with every publish of one
//    tick sent in a single statement (a burst of completions costs one round trip).
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
};
const CHANNEL_OF = new Map(Object.entries(PG_CHANNELS).map(([k, v]) => [v, k as Channel]));

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
  #outbox: Array<{ channel: string; payload: string }> = [];
  #flushWaiters: Array<() => void> = [];
  #flushScheduled = false;

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
    this.#outbox.push({ channel: PG_CHANNELS[channel], payload: `${this.origin}|${payload}` });
    const sent = new Promise<void>((resolve) => this.#flushWaiters.push(resolve));
    if (!this.#flushScheduled) {
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
    await this.#flush();
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    const c = this.#client;
    this.#client = null;
    await c?.end().catch(() => {});
  }

  /**
   * Sends everything published so far as one statement. Best effort: a failure is
   * reported, not thrown: the state change the message is about is already stored,
   * and the receivers' polls pick it up.
   */
  async #flush(): Promise<void> {
    this.#flushScheduled = false;
    const batch = this.#outbox;
    const waiters = this.#flushWaiters;
    this.#outbox = [];
    this.#flushWaiters = [];
    if (batch.length === 0) {
      for (const w of waiters) w();
      return;
    }
    try {
      await this.#pool.query({
        name: 'leash_notify',
        text: 'SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(c, p, i) ORDER BY i',
        values: [batch.map((b) => b.channel), batch.map((b) => b.payload)],
      });
    } catch (err) {
      this.#onError(err, `NOTIFY of ${batch.length} message(s) failed`);
    } finally {
      for (const w of waiters) w();
    }
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
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`LISTEN connection did not answer a ping within ${this.#pingMs} ms`)),
        this.#pingMs,
      );
    });
    try {
      await Promise.race([c.query('SELECT 1'), timeout]);
    } catch (err) {
      this.#lost(c, err);
    } finally {
      clearTimeout(timer);
    }
  }
}
