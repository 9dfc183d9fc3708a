// Remote workers (issue 19): cancel asked over HTTP → the Python handler's
// asyncio.CancelledError, p50/p99 over N trials, beside the in-process handler's
// signal in the same run; no-op tasks/s through one Python worker with 16 slots; and a
// worker killed with SIGKILL mid-task → its task `failed` `worker_lost` (goal: within
// the lease + 1 s), a few trials with a 3 s lease.
//   node bench/workers.ts [trials=200]
// Times are on CLOCK_MONOTONIC in every process (Python's time.monotonic, Node's hrtime).

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServeProcess } from '../test/helpers/serve-process.ts';
import { fmt, header, nowMono, row, summarize } from './lib.ts';

const TRIALS = Number(process.argv[2] ?? 200);
const LEASE_MS = 3000;
const KILL_TRIALS = 5;
const dir = mkdtempSync(join(tmpdir(), 'leash-bench-workers-'));
const server = await startServeProcess(
  'bench',
  {
    LEASH_DB: join(dir, 'leash.db'),
    LEASH_WORKER_TYPES: 'bench.wait,bench.noop',
    // A short lease so the SIGKILL trials end in seconds (the default is 15 s).
    LEASH_WORKER_LEASE_MS: String(LEASE_MS),
    LEASH_WORKER_PING_MS: '500',
    LEASH_MAX_RUNNING_PER_OWNER: '64',
    LEASH_LOG_LEVEL: 'error',
  },
  { args: ['--tasks', join(import.meta.dirname, 'workers-tasks.ts')] },
);
function startWorker(): Promise<ChildProcess> {
  const p = spawn('/usr/bin/python3', [join(import.meta.dirname, 'workers-worker.py'), server.url], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve) => p.stdout!.on('data', (d: Buffer) => String(d).includes('ready') && resolve(p)));
}
const py = await startWorker();

async function post(path: string, body: unknown): Promise<{ id: string }> {
  const r = await fetch(server.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await r.json()) as { id: string };
}

async function waitFile(path: string): Promise<string> {
  for (;;) {
    if (existsSync(path)) return readFileSync(path, 'utf8');
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function cancelLatency(type: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < TRIALS; i++) {
    const started = join(dir, `${type}-${i}-s`);
    const marker = join(dir, `${type}-${i}-m`);
    const t = await post('/api/tasks', { type, input: { started, marker } });
    await waitFile(started);
    const asked = nowMono();
    await post(`/api/tasks/${t.id}/cancel`, {});
    out.push(Number(await waitFile(marker)) - asked);
  }
  return out;
}

header(`remote workers: cancel → handler, ${TRIALS} trials each`);
const inproc = summarize(await cancelLatency('inproc.wait'));
const python = summarize(await cancelLatency('bench.wait'));
row('in-process handler: cancel asked → signal, p50', fmt(inproc.p50));
row('in-process handler: cancel asked → signal, p99', fmt(inproc.p99));
row('Python handler: cancel asked → CancelledError, p50', fmt(python.p50));
row('Python handler: cancel asked → CancelledError, p99', fmt(python.p99), '≤ 10 ms', python.p99 <= 10);

// Throughput: no-op tasks, 16 in flight (create, then wait for the end), through one
// Python worker with 16 slots and, for scale, in-process on the same server.
async function throughput(type: string, n = 1000): Promise<number> {
  let started = 0;
  const t0 = nowMono();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (started < n) {
        started++;
        const t = await post('/api/tasks', { type, input: {} });
        await fetch(`${server.url}/api/tasks/${t.id}/wait?timeout_s=30`).then((r) => r.json());
      }
    }),
  );
  return n / ((nowMono() - t0) / 1000);
}
row('no-op tasks/s, in-process, 16 in flight', `${(await throughput('inproc.noop')).toFixed(0)}/s`);
row('no-op tasks/s, one Python worker, 16 slots', `${(await throughput('bench.noop')).toFixed(0)}/s`);

py.kill('SIGKILL');

// SIGKILL of the worker running a task → the task ends `failed` `worker_lost`.
const lost: number[] = [];
for (let i = 0; i < KILL_TRIALS; i++) {
  const w = await startWorker();
  const started = join(dir, `kill-${i}-s`);
  const t = await post('/api/tasks', { type: 'bench.wait', input: { started, marker: join(dir, `kill-${i}-m`) } });
  await waitFile(started);
  const killed = nowMono();
  w.kill('SIGKILL');
  const end = (await (await fetch(`${server.url}/api/tasks/${t.id}/wait?timeout_s=30`)).json()) as {
    status: string;
    error?: { code: string };
  };
  if (end.status !== 'failed' || end.error?.code !== 'worker_lost')
    throw new Error(`trial ${i}: ${JSON.stringify(end)}`);
  lost.push(nowMono() - killed);
}
const worst = Math.max(...lost);
row(
  `worker SIGKILL → task worker_lost, lease ${LEASE_MS / 1000} s, max of ${KILL_TRIALS}`,
  fmt(worst),
  `≤ ${(LEASE_MS + 1000) / 1000} s`,
  worst <= LEASE_MS + 1000,
);
row(`worker SIGKILL → task worker_lost, min of ${KILL_TRIALS}`, fmt(Math.min(...lost)));

server.proc.kill('SIGKILL');
await server.exited;
rmSync(dir, { recursive: true, force: true });
