import pg from 'pg';
import { PostgresStore } from '../src/store/postgres/postgres-store.ts';
const admin = 'postgres://postgres@127.0.0.1:5432/test';
const db = `leash_exp_${process.pid}`;
const q = async (sql: string) => {
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(sql);
  await c.end();
};
await q(`CREATE DATABASE ${db}`);
const url = `postgres://postgres@127.0.0.1:5432/${db}`;
const store = await PostgresStore.open(url, { poolMax: 4 });
await store.migrate();
await store.close();
const pool = new pg.Pool({ connectionString: url, max: 20, options: '-c plan_cache_mode=force_generic_plan' });
const V: Record<string, string> = {
  full: `WITH ins AS (INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at, idempotency_key, input_hash, input, options, last_seq)
     SELECT $1, 'noop', 'bench', 'queued', 0, NULL, now(), NULL, NULL, 'h', '{}'::json, NULL, 1
     WHERE (SELECT count(*) FROM tasks WHERE owner = 'bench' AND status = 'queued') < 1000000
     ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *),
   ev AS (INSERT INTO task_events (task_id, seq, type, created_at, data) SELECT id, 1, 'task.queued', created_at, '{}' FROM ins)
   SELECT * FROM ins`,
  nocount: `WITH ins AS (INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at, idempotency_key, input_hash, input, options, last_seq)
     SELECT $1, 'noop', 'bench', 'queued', 0, NULL, now(), NULL, NULL, 'h', '{}'::json, NULL, 1
     ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *),
   ev AS (INSERT INTO task_events (task_id, seq, type, created_at, data) SELECT id, 1, 'task.queued', created_at, '{}' FROM ins)
   SELECT * FROM ins`,
  noevent: `INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at, idempotency_key, input_hash, input, options, last_seq)
     SELECT $1, 'noop', 'bench', 'queued', 0, NULL, now(), NULL, NULL, 'h', '{}'::json, NULL, 1
     ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *`,
  plain: `INSERT INTO tasks (id, type, owner, status, priority, thread_id, created_at, deadline_at, idempotency_key, input_hash, input, options, last_seq)
     VALUES ($1, 'noop', 'bench', 'queued', 0, NULL, now(), NULL, NULL, 'h', '{}'::json, NULL, 1) RETURNING num`,
};
let n = 0;
for (const round of [1, 2])
  for (const [name, text] of Object.entries(V)) {
    await pool.query(`UPDATE tasks SET status = 'completed', ended_at = now() WHERE status = 'queued'`);
    await pool.query('VACUUM tasks');
    const lat: number[] = [];
    const N = 3000;
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < N) {
          next++;
          const s = performance.now();
          await pool.query({ name, text, values: [`task_${n++}`] });
          lat.push(performance.now() - s);
        }
      }),
    );
    lat.sort((a, b) => a - b);
    console.log(
      `round ${round} ${name.padEnd(8)} c=16: ${(N / ((performance.now() - t0) / 1000)).toFixed(0)}/s p50 ${lat[lat.length >> 1]!.toFixed(2)} ms p99 ${lat[Math.floor(lat.length * 0.99)]!.toFixed(2)} ms`,
    );
  }
await pool.end();
await q(`DROP DATABASE ${db} WITH (FORCE)`);
