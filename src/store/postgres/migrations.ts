// Numbered, forward-only schema migrations for PostgreSQL (graphile-worker style):
// each runs once, in its own transaction, recorded in `leash_migrations`. Several
// nodes starting at once serialize on an advisory lock, so exactly one applies each.
// Never edit a shipped migration; append a new one.

import type pg from 'pg';
import { LeashError } from '../../core/errors.ts';

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

const INIT = /* sql */ `
-- Same shape as the SQLite schema. Timestamps are timestamptz; JSON columns are json
-- (not jsonb): stored as written, key order kept, and no conversion cost per write.
CREATE TABLE tasks (
  num                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id                  text NOT NULL UNIQUE,
  type                text NOT NULL,
  owner               text NOT NULL,
  status              text NOT NULL
    CHECK (status IN ('queued', 'running', 'cancelling', 'completed', 'failed', 'cancelled')),
  priority            integer NOT NULL DEFAULT 0,
  thread_id           text,
  progress            double precision,
  progress_message    text,
  created_at          timestamptz NOT NULL,
  started_at          timestamptz,
  ended_at            timestamptz,
  deadline_at         timestamptz,
  cancel_reason       text,
  cancel_requested_at timestamptz,
  idempotency_key     text,
  input_hash          text NOT NULL,
  last_seq            integer NOT NULL DEFAULT 0,
  node_id             text,
  lease_until         timestamptz,
  attempt             integer NOT NULL DEFAULT 0,
  error               json,
  input               json NOT NULL,
  result              json,
  checkpoint          json,
  output_text         text NOT NULL DEFAULT ''
);

-- Hot indexes are partial: they hold active rows only and stay small.
CREATE INDEX tasks_queue ON tasks (priority DESC, num) WHERE status = 'queued';
CREATE INDEX tasks_running ON tasks (owner) WHERE status IN ('running', 'cancelling');
CREATE INDEX tasks_node ON tasks (node_id, lease_until) WHERE status IN ('running', 'cancelling');
CREATE INDEX tasks_active ON tasks (owner, status) WHERE status IN ('queued', 'running', 'cancelling');
CREATE INDEX tasks_thread ON tasks (thread_id, status) WHERE thread_id IS NOT NULL;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_owner_num ON tasks (owner, num);
CREATE INDEX tasks_ended ON tasks (status, ended_at) WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX tasks_cache ON tasks (owner, type, input_hash) WHERE status = 'completed';

CREATE TABLE task_events (
  task_id    text NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  seq        integer NOT NULL,
  type       text NOT NULL,
  created_at timestamptz NOT NULL,
  data       json NOT NULL,
  PRIMARY KEY (task_id, seq)
);

CREATE TABLE threads (
  num        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id         text NOT NULL UNIQUE,
  owner      text NOT NULL,
  created_at timestamptz NOT NULL,
  metadata   json NOT NULL DEFAULT '{}'
);
CREATE INDEX threads_owner_num ON threads (owner, num);

-- messages.task_id is deliberately not a foreign key: purging old tasks keeps the conversation.
CREATE TABLE messages (
  id         text PRIMARY KEY,
  thread_id  text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
  seq        integer NOT NULL,
  role       text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
  status     text NOT NULL CHECK (status IN ('complete', 'streaming', 'cancelled', 'failed')),
  task_id    text,
  created_at timestamptz NOT NULL,
  usage      json,
  content    text NOT NULL,
  UNIQUE (thread_id, seq)
);
CREATE INDEX messages_task ON messages (thread_id, task_id) WHERE task_id IS NOT NULL;
`;

// Claiming, as one server-side function so a claim is one round trip whatever it
// takes (the TypeScript it replaces needed five). Several nodes claim at once safely:
//  - candidates are locked with FOR UPDATE SKIP LOCKED: no two nodes wait on or take
//    the same row;
//  - per-owner running limits hold across nodes: before counting an owner's running
//    tasks it takes a transaction advisory lock per owner, in hash order, so claims
//    for one owner count one after the other. In a VOLATILE function every statement
//    takes a new snapshot, so the count after the lock sees what the claim it waited
//    for committed. (Crossing lock orders across pages are broken by PostgreSQL,
//    deadlock_detected, and the caller retries.)
//  - a thread's tasks run one at a time, oldest first: a candidate is only its
//    thread's next task, rechecked under the owner lock;
//  - pages skip owners known to be at their limit, so a deep backlog of one owner
//    does not starve the others (same paging as the SQLite store).
const CLAIM = /* sql */ `
CREATE FUNCTION leash_claim(p_node text, p_max int, p_limit int, p_now timestamptz, p_lease_until timestamptz)
RETURNS SETOF tasks LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  page_size constant int := least(256, p_max + 16);
  saturated text[] := '{}';
  locked text[] := '{}';
  busy text[] := '{}';
  running jsonb := '{}';
  ids text[];
  owners text[];
  threads text[];
  fresh text[];
  pick text[];
  got int := 0;
  n_started int;
  progress_before int;
  i int;
  n int;
BEGIN
  IF p_max <= 0 OR p_limit <= 0 THEN RETURN; END IF;
  SELECT coalesce(array_agg(owner), '{}') INTO saturated FROM (
    SELECT owner FROM tasks WHERE status IN ('running', 'cancelling') GROUP BY owner HAVING count(*) >= p_limit
  ) s;
  LOOP
    SELECT coalesce(array_agg(c.id ORDER BY c.priority DESC, c.num), '{}'),
           coalesce(array_agg(c.owner ORDER BY c.priority DESC, c.num), '{}'),
           coalesce(array_agg(c.thread_id ORDER BY c.priority DESC, c.num), '{}')
      INTO ids, owners, threads
      FROM (
        SELECT t.id, t.owner, t.thread_id, t.priority, t.num FROM tasks t
        WHERE t.status = 'queued' AND NOT (t.owner = ANY(saturated))
          AND (t.thread_id IS NULL OR (
            NOT EXISTS (SELECT 1 FROM tasks o WHERE o.thread_id = t.thread_id AND o.status IN ('running', 'cancelling'))
            AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.thread_id = t.thread_id AND o.status = 'queued' AND o.num < t.num)))
        ORDER BY t.priority DESC, t.num
        LIMIT page_size
        FOR UPDATE OF t SKIP LOCKED
      ) c;
    EXIT WHEN cardinality(ids) = 0;

    fresh := ARRAY(SELECT DISTINCT o FROM unnest(owners) AS o WHERE NOT (o = ANY(locked)));
    IF cardinality(fresh) > 0 THEN
      PERFORM pg_advisory_xact_lock(${0x6c6f_776e}, h)
        FROM (SELECT DISTINCT hashtext(o) AS h FROM unnest(fresh) AS o) x ORDER BY h;
      locked := locked || fresh;
      SELECT running || coalesce(jsonb_object_agg(o, cnt), '{}') INTO running FROM (
        SELECT o, (SELECT count(*) FROM tasks WHERE status IN ('running', 'cancelling') AND owner = o) AS cnt
        FROM unnest(fresh) AS o
      ) x;
      busy := busy || ARRAY(
        SELECT DISTINCT thread_id FROM tasks
        WHERE status IN ('running', 'cancelling') AND thread_id = ANY(threads));
    END IF;

    pick := '{}';
    progress_before := got + cardinality(saturated);
    FOR i IN 1 .. cardinality(ids) LOOP
      EXIT WHEN got + cardinality(pick) >= p_max;
      n := coalesce((running ->> owners[i])::int, 0);
      IF n >= p_limit THEN
        IF NOT (owners[i] = ANY(saturated)) THEN saturated := saturated || owners[i]; END IF;
        CONTINUE;
      END IF;
      IF threads[i] IS NOT NULL THEN
        CONTINUE WHEN threads[i] = ANY(busy);
        busy := busy || threads[i];
      END IF;
      pick := pick || ids[i];
      running := running || jsonb_build_object(owners[i], n + 1);
      IF n + 1 >= p_limit AND NOT (owners[i] = ANY(saturated)) THEN saturated := saturated || owners[i]; END IF;
    END LOOP;

    IF cardinality(pick) > 0 THEN
      RETURN QUERY
        WITH up AS (
          UPDATE tasks SET status = 'running', started_at = p_now, node_id = p_node, lease_until = p_lease_until,
            attempt = attempt + 1, last_seq = last_seq + 1
          WHERE id = ANY(pick) AND status = 'queued'
          RETURNING *
        ), ev AS (
          INSERT INTO task_events (task_id, seq, type, created_at, data)
          SELECT up.id, up.last_seq, 'task.started', p_now, json_build_object('attempt', up.attempt) FROM up
        )
        SELECT up.* FROM up JOIN unnest(pick) WITH ORDINALITY AS p(id, ord) ON p.id = up.id ORDER BY p.ord;
      GET DIAGNOSTICS n_started = ROW_COUNT;
      got := got + n_started;
    END IF;
    -- A page that neither claimed nor saturated anything would come back identical.
    EXIT WHEN cardinality(ids) < page_size OR got >= p_max OR got + cardinality(saturated) = progress_before;
  END LOOP;
END
$fn$;
`;

// Creating, as one server-side function (it needs statements in order, each with a
// fresh snapshot, as leash_claim does). The common path is one insert and its
// `task.queued` event. Eager start (the caller's node has a free slot): the task is
// inserted `running` for that node, with `task.started`, when a claim would take it
// next anyway — no thread, nothing queued at its priority or above — and its owner is
// under the running limit. The owner's count is exact as in leash_claim: it is taken
// after the owner's advisory lock, in a statement of its own. The lock is only tried:
// if a claim (or another eager create) of that owner holds it, the task is queued and
// the claim takes it. Nothing is returned when the queue is full or the idempotency key
// was used; the caller then finds out which.
const CREATE = /* sql */ `
CREATE FUNCTION leash_create(p_id text, p_type text, p_owner text, p_priority int, p_thread text,
  p_created timestamptz, p_deadline timestamptz, p_idem text, p_hash text, p_input json, p_options json,
  p_max_queued int, p_node text, p_max_running int, p_now timestamptz, p_lease_until timestamptz)
RETURNS SETOF tasks LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  go boolean := false;
  r tasks;
BEGIN
  -- Counting stops at the limit: a deep queue is not counted row by row on every create.
  IF (SELECT count(*) FROM (SELECT 1 FROM tasks WHERE owner = p_owner AND status = 'queued' LIMIT p_max_queued) q)
     >= p_max_queued THEN
    RETURN;
  END IF;
  IF p_node IS NOT NULL AND p_thread IS NULL AND p_max_running > 0 THEN
    IF NOT EXISTS (SELECT 1 FROM tasks WHERE status = 'queued' AND priority >= p_priority) THEN
      IF pg_try_advisory_xact_lock(${0x6c6f_776e}, hashtext(p_owner)) THEN
        go := (SELECT count(*) FROM tasks WHERE owner = p_owner AND status IN ('running', 'cancelling')) < p_max_running;
      END IF;
    END IF;
  END IF;
  INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at, idempotency_key,
    input_hash, input, options, last_seq, started_at, node_id, lease_until, attempt)
  VALUES (p_id, p_type, p_owner, CASE WHEN go THEN 'running' ELSE 'queued' END, p_priority, p_thread, p_created,
    p_deadline, p_idem, p_hash, p_input, p_options, CASE WHEN go THEN 2 ELSE 1 END,
    CASE WHEN go THEN p_now END, CASE WHEN go THEN p_node END, CASE WHEN go THEN p_lease_until END,
    CASE WHEN go THEN 1 ELSE 0 END)
  ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING * INTO r;
  IF NOT FOUND THEN RETURN; END IF;
  INSERT INTO task_events (task_id, seq, type, created_at, data) VALUES (p_id, 1, 'task.queued', p_created, '{}');
  IF go THEN
    INSERT INTO task_events (task_id, seq, type, created_at, data)
    VALUES (p_id, 2, 'task.started', p_now, json_build_object('attempt', 1));
  END IF;
  RETURN NEXT r;
END
$fn$;
`;

// leash_create, version 2: an owner far below its running limit takes the owner lock
// shared. Eager creates of one owner then no longer refuse each other (at 16 creates in
// flight for one owner, half found the exclusive lock taken and went through the queue
// and a claim instead). Claims still take it exclusive, so none runs beside them. The
// creates sharing it cannot see each other's uncommitted tasks, but each starts one
// task in a transaction of its own (leash calls it as one autocommit statement), so no
// more of them are in flight than there can be transactions: client connections,
// prepared transactions and background workers. A create starts its task under the
// shared lock only when the owner's running count plus that many is still within the
// limit. Near the limit (and with the default limits, far below max_connections) it is
// the exclusive try as before.
const CREATE_V2 = /* sql */ `
CREATE OR REPLACE FUNCTION leash_create(p_id text, p_type text, p_owner text, p_priority int, p_thread text,
  p_created timestamptz, p_deadline timestamptz, p_idem text, p_hash text, p_input json, p_options json,
  p_max_queued int, p_node text, p_max_running int, p_now timestamptz, p_lease_until timestamptz)
RETURNS SETOF tasks LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  go boolean := false;
  r tasks;
  -- The most transactions that can be open at once (see above).
  conns constant int := current_setting('max_connections')::int
    + current_setting('max_prepared_transactions')::int + current_setting('max_worker_processes')::int;
BEGIN
  -- Counting stops at the limit: a deep queue is not counted row by row on every create.
  IF (SELECT count(*) FROM (SELECT 1 FROM tasks WHERE owner = p_owner AND status = 'queued' LIMIT p_max_queued) q)
     >= p_max_queued THEN
    RETURN;
  END IF;
  IF p_node IS NOT NULL AND p_thread IS NULL AND p_max_running > 0 THEN
    IF NOT EXISTS (SELECT 1 FROM tasks WHERE status = 'queued' AND priority >= p_priority) THEN
      IF p_max_running > conns AND pg_try_advisory_xact_lock_shared(${0x6c6f_776e}, hashtext(p_owner)) THEN
        go := (SELECT count(*) FROM (SELECT 1 FROM tasks WHERE owner = p_owner AND status IN ('running', 'cancelling')
                LIMIT p_max_running - conns + 1) x) + conns <= p_max_running;
      END IF;
      IF NOT go AND pg_try_advisory_xact_lock(${0x6c6f_776e}, hashtext(p_owner)) THEN
        go := (SELECT count(*) FROM tasks WHERE owner = p_owner AND status IN ('running', 'cancelling')) < p_max_running;
      END IF;
    END IF;
  END IF;
  INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at, idempotency_key,
    input_hash, input, options, last_seq, started_at, node_id, lease_until, attempt)
  VALUES (p_id, p_type, p_owner, CASE WHEN go THEN 'running' ELSE 'queued' END, p_priority, p_thread, p_created,
    p_deadline, p_idem, p_hash, p_input, p_options, CASE WHEN go THEN 2 ELSE 1 END,
    CASE WHEN go THEN p_now END, CASE WHEN go THEN p_node END, CASE WHEN go THEN p_lease_until END,
    CASE WHEN go THEN 1 ELSE 0 END)
  ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING * INTO r;
  IF NOT FOUND THEN RETURN; END IF;
  INSERT INTO task_events (task_id, seq, type, created_at, data) VALUES (p_id, 1, 'task.queued', p_created, '{}');
  IF go THEN
    INSERT INTO task_events (task_id, seq, type, created_at, data)
    VALUES (p_id, 2, 'task.started', p_now, json_build_object('attempt', 1));
  END IF;
  RETURN NEXT r;
END
$fn$;
`;

// leash_claim, version 2: a queued task past its deadline is never started (the
// reaper, Store.expireQueued, ends it `cancelled` with reason `deadline`). The same
// function as migration 2 with one more candidate condition, derived from it so the two
// cannot drift apart silently.
const CLAIM_CANDIDATE = "WHERE t.status = 'queued' AND NOT (t.owner = ANY(saturated))";
if (!CLAIM.includes(CLAIM_CANDIDATE)) throw new Error('leash_claim v2: the candidate condition moved');
const CLAIM_V2 = CLAIM.replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION').replace(
  CLAIM_CANDIDATE,
  `${CLAIM_CANDIDATE}\n          AND (t.deadline_at IS NULL OR t.deadline_at > p_now)`,
);
const REAPER = /* sql */ `
CREATE INDEX tasks_queued_deadline ON tasks (deadline_at) WHERE status = 'queued';
ALTER TABLE tasks ADD COLUMN cancel_detached boolean NOT NULL DEFAULT false;
${CLAIM_V2}
`;

// Raised by the event-write batch (write-events.ts) for a task whose stored log is past
// the batch's first seq: the writer lost the task. SQLSTATE LS409, the task id as DETAIL.
const FENCED = /* sql */ `
CREATE FUNCTION leash_fenced(p_id text) RETURNS int LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'task % has events past this batch''s seqs already', p_id USING ERRCODE = 'LS409', DETAIL = p_id;
END
$fn$;
`;

// leash_claim with remote-worker types (ClaimOptions.remote): an overload with two
// more parameters; a queued task of a type in p_remote_types is a candidate only when
// "owner<US>type" is in p_remote_allow (a worker on the claiming node can take it).
// Derived from version 2 so the two cannot drift apart silently.
const CLAIM_SIGNATURE =
  'leash_claim(p_node text, p_max int, p_limit int, p_now timestamptz, p_lease_until timestamptz)';
if (!CLAIM_V2.includes(CLAIM_SIGNATURE)) throw new Error('leash_claim v3: the signature moved');
const CLAIM_REMOTE = CLAIM_V2.replace(
  CLAIM_SIGNATURE,
  'leash_claim(p_node text, p_max int, p_limit int, p_now timestamptz, p_lease_until timestamptz, p_remote_types text[], p_remote_allow text[])',
).replace(
  CLAIM_CANDIDATE,
  `${CLAIM_CANDIDATE}\n          AND (NOT (t.type = ANY(p_remote_types)) OR (t.owner || chr(31) || t.type) = ANY(p_remote_allow))`,
);

export const MIGRATIONS: readonly Migration[] = [
  { id: 1, name: 'init', sql: INIT },
  { id: 2, name: 'claim function', sql: CLAIM },
  // Per-task run options (isolation, grace_ms); NULL = the type's defaults. leash_claim
  // returns SETOF tasks, so it carries the new column as it is.
  { id: 3, name: 'task run options', sql: 'ALTER TABLE tasks ADD COLUMN options json;' },
  { id: 4, name: 'create function (eager start)', sql: CREATE },
  { id: 5, name: 'create function: shared owner lock far below the limit', sql: CREATE_V2 },
  { id: 6, name: 'reaper: queued deadline index, claim skips expired, cancel_detached', sql: REAPER },
  { id: 7, name: 'event write fence', sql: FENCED },
  { id: 8, name: 'claim function: remote-worker types', sql: CLAIM_REMOTE },
  // Task types remote workers declared, so every node knows them (docs/workers.md).
  {
    id: 9,
    name: 'remote-worker types',
    sql: 'CREATE TABLE remote_types (type text PRIMARY KEY, input_schema text, declared_at timestamptz NOT NULL);',
  },
  // Remote types per owner: one owner's type name (and its schema) is not another's.
  // Rows stored before have no owner (''): known, nobody's until declared again.
  {
    id: 10,
    name: 'remote-worker types per owner',
    sql: `ALTER TABLE remote_types ADD COLUMN owner text NOT NULL DEFAULT '';
      ALTER TABLE remote_types DROP CONSTRAINT remote_types_pkey;
      ALTER TABLE remote_types ADD PRIMARY KEY (owner, type);
      ALTER TABLE remote_types ALTER COLUMN owner DROP DEFAULT;`,
  },
];

/** Session-level advisory lock key held while migrating ("leash" + 1). */
const MIGRATION_LOCK = 0x6c65_6173;

/**
 * Applies every migration not yet recorded, in id order, each in its own transaction,
 * under a session advisory lock. Returns the ids applied; an up-to-date database yields [].
 */
export async function migrate(client: pg.ClientBase, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.id <= migrations[i - 1]!.id) {
      throw new LeashError(
        'migration_error',
        `migration ids must increase (${migrations[i]!.id} after ${migrations[i - 1]!.id})`,
      );
    }
  }
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS leash_migrations (
      id         integer PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Set((await client.query<{ id: number }>('SELECT id FROM leash_migrations')).rows.map((r) => r.id));
    const known = migrations.at(-1)?.id ?? 0;
    const latest = Math.max(0, ...done);
    if (latest > known) {
      throw new LeashError(
        'migration_error',
        `the database schema (migration ${latest}) is newer than this version of leash knows (${known}); upgrade leash`,
      );
    }
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO leash_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
        await client.query('COMMIT');
        applied.push(m.id);
      } catch (cause) {
        await client.query('ROLLBACK').catch(() => {});
        throw new LeashError('migration_error', `migration ${m.id} (${m.name}) failed: ${(cause as Error).message}`, {
          cause,
        });
      }
    }
    return applied;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
  }
}
