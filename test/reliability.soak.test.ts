// The CI share of the soak (bench/soak.ts runs 100,000 cycles): a few thousand
// create/cancel cycles through the Runtime and a few hundred over HTTP, and a few
// hundred SSE streams opened and dropped at once. Afterwards every in-memory
// registry is back to zero and no handle is left open. Memory growth is measured
// by the bench (too noisy for a short run).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { createModelRegistry } from '../src/models/registry.ts';
import { Runtime } from '../src/runtime/runtime.ts';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts';
import { builtinTasks } from '../src/tasks/index.ts';
import { drained, handles, httpCycles, libraryCycles, registries, SOAK_MODEL } from '../bench/soak.ts';
import { tempDbPath } from './helpers/runtime.ts';
import { api, eventually } from './helpers/server.ts';
import { assertRegistriesDrain, startLoggedServer, type LoggedServer } from './reliability.helpers.ts';

const LIB_CYCLES = Number(process.env.SOAK_LIB_CYCLES ?? 3000);
const HTTP_CYCLES = Number(process.env.SOAK_HTTP_CYCLES ?? 300);
const STREAMS = 300;

/**
 * Open handles once the work in flight has had a moment: a setImmediate queued at the
 * instant of looking has run by then (one that re-arms itself for ever is still seen).
 */
async function settledHandles(): Promise<Record<string, number>> {
  await new Promise((r) => setTimeout(r, 50));
  return handles();
}

describe('soak (short)', () => {
  it(`${LIB_CYCLES} library create/cancel cycles: all cancelled, registries at zero, no handle left`, async () => {
    const db = tempDbPath();
    const store = SqliteStore.open(db.path);
    await store.migrate();
    const rt = new Runtime({
      store,
      models: createModelRegistry({ defaultModel: SOAK_MODEL, providers: {} }),
      logger: pino({ level: 'silent' }),
      tasks: builtinTasks,
      concurrency: 64,
      maxRunningPerOwner: 16,
      maxQueuedPerOwner: 100_000,
    });
    await rt.start();
    try {
      await libraryCycles(rt, 200);
      assert.ok(await drained(rt));
      const before = await settledHandles();
      const c = await libraryCycles(rt, LIB_CYCLES);
      assert.equal(c.cycles, LIB_CYCLES);
      assert.equal(c.unexpected, 0);
      // Both paths ran: cancelled before starting, and cancelled mid-call.
      assert.ok(c.cancelledQueued > LIB_CYCLES / 4 && c.cancelledRunning > LIB_CYCLES / 4, JSON.stringify(c));
      assert.ok(await drained(rt), JSON.stringify(registries(rt)));
      assert.deepEqual(await settledHandles(), before);
      const counts = await rt.countByStatus();
      assert.equal(counts.cancelled, LIB_CYCLES + 200);
      assert.equal(counts.queued + counts.running + counts.cancelling, 0);
    } finally {
      await rt.stop({ graceMs: 0 });
      await store.close();
      db.cleanup();
    }
  });

  describe('over HTTP', () => {
    let s: LoggedServer;
    before(async () => {
      s = await startLoggedServer({
        level: 'warn',
        models: createModelRegistry({ defaultModel: SOAK_MODEL, providers: {} }),
        runtime: { concurrency: 64, maxRunningPerOwner: 16, maxQueuedPerOwner: 100_000 },
        // All the streams below are the one local owner's.
        security: { maxStreamsPerOwner: STREAMS + 10 },
      });
    });
    after(() => s.close());

    it(`${HTTP_CYCLES} create / follow / hang up / cancel / wait cycles`, async () => {
      const c = await httpCycles(s.url, HTTP_CYCLES);
      assert.equal(c.unexpected, 0);
      assert.ok(c.cancelledRunning > 0 && c.cancelledQueued > 0, JSON.stringify(c));
      await assertRegistriesDrain(s.runtime);
    });

    it(`${STREAMS} SSE streams on 10 running tasks, dropped at once: listeners back to zero`, async () => {
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) {
        const r = await api(s.url, 'POST', '/api/tasks', { body: { type: 'generate', input: { prompt: `s${i}` } } });
        ids.push(r.body.id);
      }
      await eventually(async () =>
        (await Promise.all(ids.map((id) => s.runtime.get(id, 'local')))).every((t) => t?.status === 'running'),
      );
      const ac = new AbortController();
      const readers = await Promise.all(
        Array.from({ length: STREAMS }, async (_, i) => {
          const res = await fetch(`${s.url}/api/tasks/${ids[i % ids.length]}/events`, { signal: ac.signal });
          assert.equal(res.status, 200, 'a real stream, not a refusal');
          const reader = res.body!.getReader();
          await reader.read(); // the stream is open and flowing
          return reader;
        }),
      );
      assert.equal(s.runtime.eventLog.listenerCount, ids.length, 'one bus entry per followed task');
      ac.abort();
      await Promise.all(readers.map((r) => r.cancel().catch(() => {})));
      // Dropped streams don't cancel (on_disconnect defaults to continue); their listeners go.
      await eventually(async () => s.runtime.eventLog.listenerCount === 0);
      for (const id of ids) assert.equal((await s.runtime.get(id, 'local'))?.status, 'running');
      await api(s.url, 'POST', '/api/tasks/cancel', { body: {} });
      await assertRegistriesDrain(s.runtime);
      assert.deepEqual(
        s.logsAtLeast(50).map((e) => e.msg),
        [],
      );
    });
  });
});
