// Benchmark of task throughput through HTTP (issue 2): a real `leash serve` in a
// child process, a client with 32 requests in flight. Each no-op task is created
// with POST /api/tasks and waited for with GET /api/tasks/:id/wait.
// Reference beside it: the same server answering GET /healthz (no task work), the
// HTTP ceiling of this machine for this client.
// Three runs on the same server, each figure printed as median and spread (issue 21).
// Run: npm run bench:http   (or: npx node bench/http.ts [tasks])

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RUNS, header, repeat, type Figure } from './lib.ts';
import { startServeProcess } from '../test/helpers/serve-process.ts';

const N = Number(process.argv[2] ?? 4000);
const CONCURRENCY = 32;
const dir = mkdtempSync(join(tmpdir(), 'leash-bench-http-'));

const server = await startServeProcess(
  'leash serve',
  { LEASH_MAX_RUNNING_PER_OWNER: '32', LEASH_MAX_QUEUED_PER_OWNER: '100000' },
  { args: ['--db', join(dir, 'bench.db')] },
);
const url = server.url;

async function pool(n: number, fn: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) await fn(next++);
    }),
  );
  return (performance.now() - t0) / 1000;
}

header(`leash HTTP benchmark, ${N} no-op tasks, ${CONCURRENCY} in flight, server in a child process, ${RUNS} runs`);
try {
  // Warm-up (JIT, connection pool).
  await pool(200, async () => {
    await (await fetch(`${url}/healthz`)).text();
  });

  await repeat(async (): Promise<Record<string, Figure>> => {
    const refSecs = await pool(N, async () => {
      const r = await fetch(`${url}/healthz`);
      await r.text();
    });
    let failed = 0;
    const secs = await pool(N, async () => {
      const r = await fetch(`${url}/api/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'generate', input: { prompt: 'x', model: 'simulated?tps=0&tokens=1' } }),
      });
      const task = (await r.json()) as { id: string };
      if (r.status !== 202) {
        failed++;
        return;
      }
      const w = await fetch(`${url}/api/tasks/${task.id}/wait?timeout_s=30`);
      const done = (await w.json()) as { status: string };
      if (done.status !== 'completed') failed++;
    });
    const perSec = (v: number): string => `${Math.round(v)} /s`;
    return {
      'reference: GET /healthz requests': { value: N / refSecs, show: perSec },
      'tasks created→completed via HTTP (POST + wait)': {
        value: N / secs,
        show: perSec,
        goal: '≥ 1000 /s',
        ok: (v) => v >= 1000,
      },
      '  tasks per healthz request (ratio, same run)': { value: refSecs / secs, show: (v) => `${v.toFixed(2)}×` },
      '  tasks not completed': { value: failed, show: String, goal: '0', ok: (v) => v === 0 },
    };
  });
} finally {
  server.proc.kill('SIGTERM');
  await server.exited;
  rmSync(dir, { recursive: true, force: true });
}
