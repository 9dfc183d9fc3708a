// The SQLite thread's CPU per streamed event (issue 21): what one write batch of many
// streaming tasks costs the store, through the store's own writeEvents on a WAL file,
// with no runtime, sockets or timers around it. STREAMS tasks each emit 20 deltas a
// second (a task.progress every 20th, as `generate` does) for SECONDS of simulated time;
// the batch window decides how many of each task's events one commit carries. Printed
// for the write pattern before this round and for each change made since, in order:
//   before        100 ms window, the task row's text appended with every batch, SQLite's
//                 default checkpoint (every 1,000 WAL pages)
//   + checkpoint  wal_autocheckpoint 10,000 (store/sqlite/db.ts)
//   + text        the row's text saved about once a second (runtime/active-run.ts OUTPUT_SAVE_MS)
//   + window      the window the event log picks for that many tasks (runtime/event-log.ts)
// Median of three runs each (BENCH_RUNS).
// Run: npm run bench:sqlite-events   (or: npx node bench/sqlite-events.ts [streams] [seconds])

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { EventLog } from '../src/runtime/event-log.ts';
import { SqliteDb } from '../src/store/sqlite/db.ts';
import { writeEvents } from '../src/store/sqlite/write-events.ts';
import type { EventWrite, Store } from '../src/store/store.ts';
import { RUNS, header, repeat, type Figure } from './lib.ts';

const STREAMS = Number(process.argv[2] ?? 500);
const SECONDS = Number(process.argv[3] ?? 30);
const RATE = 20; // deltas per second per stream
const BASE_WINDOW_MS = 100; // the SQLite default (runtime/runtime.ts)

/** The window the event log settles on when every batch holds all STREAMS tasks. */
function eventLogWindow(): number {
  const log = new EventLog(
    { kind: 'sqlite', writeEvents: async () => {} } as unknown as Store,
    pino({ level: 'silent' }),
    {
      batchWindowMs: BASE_WINDOW_MS,
    },
  );
  for (let i = 0; i < STREAMS; i++) log.append(`t${i}`, 3, { type: 'output.delta', data: { text: 'x' } });
  void log.flush();
  return log.batchWindowMs;
}

interface Config {
  name: string;
  windowMs: number;
  /** The task row's text is appended every this many ms (0: with every batch). */
  textEveryMs: number;
  checkpointPages: number | null;
}

/** CPU µs (user + system) per event of this thread over the simulated run. */
function runOnce(c: Config): number {
  const dir = mkdtempSync(join(tmpdir(), 'leash-bench-sqlite-events-'));
  try {
    const db = SqliteDb.open(join(dir, 'events.db'));
    db.migrate();
    if (c.checkpointPages !== null) db.q(`PRAGMA wal_autocheckpoint = ${c.checkpointPages}`).get();
    const now = new Date().toISOString();
    const ids = Array.from(
      { length: STREAMS },
      (_, i) => `tsk_${i.toString(36).padStart(6, '0')}${Math.random().toString(36).slice(2, 12)}`,
    );
    db.tx(() => {
      for (const id of ids)
        db.q(
          `INSERT INTO tasks (id, type, owner, status, created_at, input_hash, input, last_seq) VALUES (?, 'generate', 'local', 'running', ?, 'h', '{}', 2)`,
        ).run(id, now);
    });
    const perBatch = Math.max(1, Math.round((RATE * c.windowMs) / 1000));
    const batches = Math.round((SECONDS * 1000) / c.windowMs);
    const textEvery = c.textEveryMs === 0 ? 1 : Math.max(1, Math.round(c.textEveryMs / c.windowMs));
    const seq = new Map(ids.map((id) => [id, 2]));
    const unsaved = new Map(ids.map((id) => [id, '']));
    let events = 0;
    const t0 = process.cpuUsage();
    for (let b = 0; b < batches; b++) {
      const writes: EventWrite[] = [];
      const saveText = (b + 1) % textEvery === 0;
      for (let k = 0; k < perBatch; k++) {
        for (const id of ids) {
          const s = seq.get(id)! + 1;
          seq.set(id, s);
          const created_at = new Date().toISOString();
          if (s % 21 === 0) {
            // progress: a full row update that carries the unsaved text (as the runtime does)
            const text = unsaved.get(id)!;
            unsaved.set(id, '');
            writes.push({
              event: {
                task_id: id,
                seq: s,
                type: 'task.progress',
                data: { progress: null, message: `${s} tokens` },
                created_at,
              },
              patch: { progress: null, progress_message: `${s} tokens`, ...(text !== '' && { append_output: text }) },
            });
            continue;
          }
          const text = `${(performance.now() + b).toFixed(3)}|`;
          let patch: EventWrite['patch'];
          if (c.textEveryMs === 0) patch = { append_output: text };
          else {
            const all = unsaved.get(id)! + text;
            if (saveText && k === perBatch - 1) {
              patch = { append_output: all };
              unsaved.set(id, '');
            } else unsaved.set(id, all);
          }
          writes.push({
            event: { task_id: id, seq: s, type: 'output.delta', data: { text }, created_at },
            ...(patch && { patch }),
          });
        }
      }
      writeEvents(db, writes);
      events += writes.length;
    }
    const cpu = process.cpuUsage(t0);
    db.close();
    return (cpu.user + cpu.system) / events;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const window = eventLogWindow();
const configs: Config[] = [
  { name: 'before', windowMs: BASE_WINDOW_MS, textEveryMs: 0, checkpointPages: 1000 },
  { name: '+ checkpoint', windowMs: BASE_WINDOW_MS, textEveryMs: 0, checkpointPages: null },
  { name: '+ text', windowMs: BASE_WINDOW_MS, textEveryMs: 1000, checkpointPages: null },
  { name: '+ window (now)', windowMs: window, textEveryMs: 1000, checkpointPages: null },
];
header(
  `SQLite thread CPU per streamed event: ${STREAMS} tasks × ${RATE} deltas/s for ${SECONDS} s, ${RUNS} runs (the event log's window for ${STREAMS} tasks: ${window} ms)`,
);
const us = (v: number): string => `${v.toFixed(1)} µs`;
const result = await repeat(async () => {
  const out: Record<string, Figure> = {};
  for (const c of configs) {
    out[`${c.name}: ${c.windowMs} ms window, store thread CPU per event`] = { value: runOnce(c), show: us };
  }
  return out;
});
const values = Object.values(result).map((r) => r.median);
console.log(`\n  now / before: ${(values.at(-1)! / values[0]!).toFixed(2)}×`);
