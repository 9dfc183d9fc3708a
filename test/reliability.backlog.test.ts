// Issue #15: while the store takes no writes (a PostgreSQL restart, a full disk), the
// events of running tasks wait in memory to be written. That backlog is bounded
// (LEASH_MAX_UNWRITTEN_EVENTS): at the bound new creates answer 503
// `store_unavailable`, and running tasks that emit more are stopped and end `failed`
// with that code — the backlog stops growing instead of memory. Once the store takes
// writes again the backlog drains and everything is recorded.
//
// The store is a real SQLite store behind a test double whose `writeEvents` fails while
// `down` is set (everything else works, so the 503 comes from the bound, not the store).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../src/cli/serve.ts';
import { LeashError } from '../src/core/errors.ts';
import type { Store } from '../src/store/store.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { api, eventually, readSse, type SseFrame } from './helpers/server.ts';

const BOUND = 2000;
const TASKS = 6;
// Fast streams (a delta every 2 ms each): the bound is reached within a second.
const MODEL = 'simulated?tps=500&tokens=1000000';

function failingWrites(store: Store): { store: Store; setDown(down: boolean): void } {
  let down = false;
  const proxy = new Proxy(store, {
    get(target, key) {
      if (key === 'writeEvents' && down) {
        return async () => {
          throw new LeashError('store_unavailable', 'the store takes no writes (test double)');
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store: proxy, setDown: (d) => (down = d) };
}

describe('unwritten events are bounded while the store is down', () => {
  let dir = '';
  let server: RunningServer | null = null;
  after(async () => {
    await server?.close({ graceMs: 0 });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('past LEASH_MAX_UNWRITTEN_EVENTS: creates get 503, emitting tasks fail, the backlog stops growing; then it drains', async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-backlog-'));
    const real = SqliteStore.open(join(dir, 'leash.db'));
    const { store, setDown } = failingWrites(real);
    server = await startServer({
      store,
      host: '127.0.0.1',
      port: 0,
      logger: pino({ level: 'silent' }),
      runtime: { maxUnwrittenEvents: BOUND, shutdownGraceMs: 0, maxRunningPerOwner: 100 },
    });
    const { url, runtime } = server;
    const log = runtime.eventLog;

    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) {
      const r = await api(url, 'POST', '/api/tasks', {
        body: { type: 'generate', input: { prompt: `p${i}`, model: MODEL } },
      });
      assert.equal(r.status, 202);
      ids.push(r.body.id);
    }
    const streams = new Map<string, SseFrame[]>();
    const readers = ids.map(async (id) => {
      const frames: SseFrame[] = [];
      streams.set(id, frames);
      await readSse(await fetch(`${url}/api/tasks/${id}/events`), { until: (f) => (frames.push(f), false) });
    });
    await eventually(async () => [...streams.values()].every((f) => f.some((e) => e.event === 'output.delta')));

    setDown(true);
    await eventually(async () => log.overloaded, 20_000);
    // A create at the bound: 503 store_unavailable, before the store is asked.
    const refused = await api(url, 'POST', '/api/tasks', {
      body: { type: 'generate', input: { prompt: 'one more', model: MODEL } },
    });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'store_unavailable');
    // Bad input is still a 4xx, whatever the store's state.
    const bad = await api(url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt: 42 } } });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));

    // The backlog stops growing: at most a few events per task past the bound (the text
    // emitted before the stop, task.cancelling/failed), not a stream's worth.
    const samples: number[] = [];
    for (let i = 0; i < 10; i++) {
      samples.push(log.pendingCount);
      await new Promise((r) => setTimeout(r, 100));
    }
    const peak = Math.max(...samples);
    assert.ok(peak <= BOUND + 3 * TASKS, `backlog ${samples.join(' → ')} stays at the bound ${BOUND}`);
    assert.equal(samples.at(-1), samples.at(-5), `backlog ${samples.join(' → ')} no longer grows`);
    // Readers (served from memory) saw every task end failed store_unavailable.
    await Promise.all(readers);
    for (const [id, frames] of streams) {
      const end = frames.at(-1)!;
      assert.equal(end.event, 'task.failed', id);
      assert.equal(end.data.error.code, 'store_unavailable');
    }
    console.log(`# backlog: bound ${BOUND}, ${TASKS} fast streams, backlog sampled ${samples.join(' → ')}`);

    // The store takes writes again: everything is written, and creates work.
    setDown(false);
    await eventually(async () => log.pendingCount === 0, 20_000);
    for (const id of ids) {
      const t = await api(url, 'GET', `/api/tasks/${id}`);
      assert.equal(t.body.status, 'failed');
      assert.equal(t.body.error.code, 'store_unavailable');
    }
    const again = await api(url, 'POST', '/api/tasks', {
      body: { type: 'generate', input: { prompt: 'after', model: 'simulated?tps=0&tokens=3' } },
    });
    assert.equal(again.status, 202);
    await eventually(async () => (await api(url, 'GET', `/api/tasks/${again.body.id}`)).body.status === 'completed');
  });
});
