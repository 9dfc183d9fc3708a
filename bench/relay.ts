// Benchmark of the relay (issue 4): a model stream through leash vs straight from
// the upstream. Three processes: the upstream (bench/relay-upstream.ts), a real
// `leash serve`, and this client. Each token carries its send time, so latency is
// measured per delta on one clock (absolute ms).
//  1. tokens/s of one burst stream: direct, leash SSE, leash WebSocket, leash /v1/chat/completions
//     (goal ≥ 0.9× direct);
//  2. 1,000 concurrent streams at 20 tokens/s (200 tokens each): per-delta latency p50/p99
//     direct, through a bare node:http relay (the floor) and through leash SSE, over the
//     deltas that arrive while all the streams are open (whole-run figures too, and each
//     figure's sample count); leash minus direct is what leash adds (goal p99 ≤ 10 ms);
//     the relaying process's CPU per relayed delta over the same window, leash's against
//     the bare relay's (goal ≤ 1.3×, issue 21); and server RSS per stream.
// Run: npm run bench:relay   (or: npx node bench/relay.ts [streams] [burstTokens])

import { fork } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { fmt, header, nowMono, row, summarize } from './lib.ts';
import { startServeProcess } from '../test/helpers/serve-process.ts';

const STREAMS = Number(process.argv[2] ?? 1000);
const BURST = Number(process.argv[3] ?? 20000);
const abs = nowMono; // comparable with the client's clock (bench/lib.ts)
const dir = mkdtempSync(join(tmpdir(), 'leash-bench-relay-'));

const upstreamProc = fork(fileURLToPath(new URL('./relay-upstream.ts', import.meta.url)), [], { stdio: 'inherit' });
const upstreamUrl = await new Promise<string>((r) =>
  upstreamProc.once('message', (m: { ready: string }) => r(m.ready)),
);
// RELAY_PROF=1: CPU profiles of leash serve (/tmp/prof) and of the bare relay (/tmp/profbare).
const bareProc = fork(fileURLToPath(new URL('./relay-bare.ts', import.meta.url)), [upstreamUrl], {
  stdio: 'inherit',
  execArgv: process.env.RELAY_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/profbare'] : [],
});
const bareUrl = await new Promise<string>((r) => bareProc.once('message', (m: { ready: string }) => r(m.ready)));
const serve = await startServeProcess(
  'leash serve',
  {
    OPENAI_BASE_URL: upstreamUrl,
    OPENAI_API_KEY: 'bench',
    // The fake upstream's models must be allowed (LEASH_MODELS is an allowlist, #15).
    LEASH_MODELS: 'simulated*,openai:*',
    // Every stream is the one local owner's: lift the per-owner stream cap (#15) above them.
    LEASH_MAX_STREAMS_PER_OWNER: String(STREAMS * 2),
    LEASH_CONCURRENCY: String(STREAMS + 10),
    LEASH_MAX_RUNNING_PER_OWNER: String(STREAMS + 10),
    LEASH_MAX_QUEUED_PER_OWNER: String(STREAMS * 2),
  },
  {
    args: ['--db', join(dir, 'relay.db')],
    nodeArgs: process.env.RELAY_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : [],
  },
);
const server = serve.proc;
const url = serve.url;
/** User and system CPU seconds of a process or thread so far, from its /proc `stat` file. */
const cpuOf = (statPath: string): { user: number; sys: number } => {
  const f = readFileSync(statPath, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 }; // utime, stime in clock ticks (USER_HZ = 100)
};
/** CPU seconds (user + system) a process has used so far. */
const processCpu = (pid: number | undefined): number => {
  const c = cpuOf(`/proc/${pid}/stat`);
  return c.user + c.sys;
};
const serverCpu = (): number => processCpu(server.pid);
/** CPU seconds a process has spent in the kernel (system time): socket writes and wake-ups land here. */
const processSys = (pid: number | undefined): number => cpuOf(`/proc/${pid}/stat`).sys;
const upstreamCpu = (): number => processCpu(upstreamProc.pid);
/** CPU seconds per thread of the server, by kind: the event loop, worker threads (the SQLite store's), the rest (V8's GC helpers, libuv). */
const serverThreadsCpu = (): { main: number; worker: number; other: number } => {
  const out = { main: 0, worker: 0, other: 0 };
  for (const tid of readdirSync(`/proc/${server.pid}/task`)) {
    try {
      const c = cpuOf(`/proc/${server.pid}/task/${tid}/stat`);
      const comm = readFileSync(`/proc/${server.pid}/task/${tid}/comm`, 'utf8').trim();
      const kind = Number(tid) === server.pid ? 'main' : comm === 'WorkerThread' ? 'worker' : 'other';
      out[kind] += c.user + c.sys;
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
};
/** The server's event loop thread: ms on a core and ms runnable but waiting for one (/proc schedstat). */
const mainSched = (): { run: number; wait: number } => {
  const [run, wait] = readFileSync(`/proc/${server.pid}/task/${server.pid}/schedstat`, 'utf8').split(' ').map(Number);
  return { run: run! / 1e6, wait: wait! / 1e6 };
};
const rssKb = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))![1]);

/** The server's event loop delay since the last call, from its Prometheus metrics (prom-client). */
async function serverLoopLag(): Promise<string> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const get = (m: string): string => {
    const v = new RegExp(`^nodejs_eventloop_lag_${m}_seconds (\\S+)$`, 'm').exec(text)?.[1];
    return v === undefined ? '?' : fmt(Number(v) * 1000);
  };
  return `${get('p50')} / ${get('p99')} / ${get('max')}`;
}

interface Sample {
  latencies: number[];
  /** When each token arrived (same order as `latencies`). */
  arrivals: number[];
  first: number;
  last: number;
  count: number;
}
const newSample = (): Sample => ({ latencies: [], arrivals: [], first: 0, last: 0, count: 0 });
const TOKEN = /(\d+\.\d+)\|/g;
function record(s: Sample, text: string): void {
  const now = abs();
  for (const m of text.matchAll(TOKEN)) {
    if (s.count++ === 0) s.first = now;
    s.last = now;
    s.latencies.push(now - Number(m[1]));
    s.arrivals.push(now);
  }
}

/**
 * The steady state of a phase: the deltas that arrived while every stream was open
 * (after the last stream's first token, before the first stream's last). Opening 1,000
 * streams at once is a connection storm (and on leash 1,000 task creates) that the
 * whole-run figures include. When that window is shorter than a second (the opening
 * took longer than a stream lasts), the window where at least 90 % of the streams
 * were open, then the whole run, each named in the printout.
 */
interface Window {
  from: number;
  to: number;
  /** Which window it is: every stream open, 90 % open, or the whole run. */
  kind: 'all' | '90' | 'whole';
  label: string;
  latencies: number[];
}
function steadyState(samples: Sample[]): Window {
  const firsts = samples.map((s) => s.first).sort((a, b) => a - b);
  const lasts = samples.map((s) => s.last).sort((a, b) => a - b);
  const n = samples.length;
  const candidates: Array<[Window['kind'], string, number, number]> = [
    ['all', `all ${n} open`, firsts[n - 1]!, lasts[0]!],
    [
      '90',
      `≥ 90 % of ${n} open (no second with all open)`,
      firsts[Math.ceil(0.9 * n) - 1]!,
      lasts[Math.floor(0.1 * n)]!,
    ],
  ];
  const [kind, label, from, to] = candidates.find(([, , f, t]) => t - f >= 1000) ?? [
    'whole',
    'whole run (no second with 90 % open)',
    firsts[0]!,
    lasts[n - 1]!,
  ];
  const latencies: number[] = [];
  for (const s of samples) s.arrivals.forEach((at, i) => at >= from && at <= to && latencies.push(s.latencies[i]!));
  return { from, to, kind, label, latencies };
}

/** A process's CPU seconds sampled every 100 ms during a phase, read afterwards over any window. */
function cpuTrace(read: () => number): { stop(): void; over(from: number, to: number): number } {
  const points: Array<[number, number]> = [[abs(), read()]];
  const timer = setInterval(() => points.push([abs(), read()]), 100);
  const at = (t: number): number => {
    const i = points.findIndex(([pt]) => pt >= t);
    if (i <= 0) return points[i === 0 ? 0 : points.length - 1]![1];
    const [t0, c0] = points[i - 1]!;
    const [t1, c1] = points[i]!;
    return c0 + ((c1 - c0) * (t - t0)) / Math.max(1e-9, t1 - t0);
  };
  return {
    stop: () => {
      clearInterval(timer);
      points.push([abs(), read()]);
    },
    over: (from, to) => at(to) - at(from),
  };
}

/**
 * POSTs `body` and reads the SSE answer frame by frame with node:http (cheaper than
 * fetch's web streams, so one client process can follow 1,000 streams), recording
 * the tokens of delta frames only (a leash `task.completed` frame repeats the whole
 * text in its result).
 */
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
function postSse(u: string, body: unknown, s: Sample): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(u, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (chunk: string) => {
        buf += chunk;
        const cut = buf.lastIndexOf('\n\n');
        if (cut < 0) return;
        for (const frame of buf.slice(0, cut).split('\n\n')) {
          if (!frame.includes('event: ') || frame.includes('event: output.delta')) record(s, frame);
        }
        buf = buf.slice(cut + 2);
      });
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const chatBody = (model: string) => ({ model, stream: true, messages: [{ role: 'user', content: 'go' }] });

const paths: Record<string, (model: string, s: Sample) => Promise<void>> = {
  direct: (model, s) => postSse(`${upstreamUrl}/chat/completions`, chatBody(model), s),
  'bare relay': (model, s) => postSse(`${bareUrl}/relay`, chatBody(model), s),
  'leash SSE': (model, s) =>
    postSse(
      `${url}/api/tasks`,
      { type: 'generate', input: { prompt: 'go', model: `openai:${model}` }, stream: true },
      s,
    ),
  'leash /v1/chat/completions': (model, s) => postSse(`${url}/v1/chat/completions`, chatBody(`openai:${model}`), s),
  'leash WebSocket': (model, s) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/api/ws`);
      ws.on('open', () =>
        ws.send(
          JSON.stringify({
            type: 'run',
            request_id: 'r',
            task: { type: 'generate', input: { prompt: 'go', model: `openai:${model}` } },
          }),
        ),
      );
      ws.on('message', (raw) => {
        const f = JSON.parse(String(raw)) as { type: string; event?: string; data?: { text?: string } };
        if (f.type !== 'event') return;
        if (f.event === 'output.delta') record(s, f.data!.text!);
        if (f.event === 'task.completed' || f.event === 'task.failed' || f.event === 'task.cancelled') {
          ws.close();
          resolve();
        }
      });
      ws.on('error', reject);
    }),
};

header(`leash relay benchmark: burst of ${BURST} tokens, then ${STREAMS} streams at 20 tokens/s`);
try {
  // 1. Throughput of one burst stream.
  const rates: Record<string, number> = {};
  for (const [name, run] of Object.entries(paths)) {
    if (name === 'bare relay' || BURST === 0) continue; // the floor for many slow streams (part 2) only
    await run('relay-0-500', newSample()); // warm-up
    const s = newSample();
    const t0 = abs();
    await run(`relay-0-${BURST}`, s);
    // From the request to the last token: merged deltas must not look like infinite speed.
    rates[name] = s.count / ((s.last - t0) / 1000);
    if (s.count !== BURST) console.log(`  ! ${name} received ${s.count}/${BURST} tokens`);
  }
  if (BURST > 0) row('reference: tokens/s straight from the upstream', `${Math.round(rates.direct!)} /s`);
  for (const name of BURST > 0 ? ['leash SSE', 'leash WebSocket', 'leash /v1/chat/completions'] : []) {
    const ratio = rates[name]! / rates.direct!;
    row(
      `${name}: tokens/s (ratio to direct)`,
      `${Math.round(rates[name]!)} (${ratio.toFixed(2)}×)`,
      '≥ 0.9×',
      ratio >= 0.9,
    );
  }

  // 2. Many concurrent slow streams: per-delta latency, CPU per delta and memory.
  // 200 tokens (10 s at 20 tokens/s): long enough that every stream is open together
  // for several seconds even when opening 1,000 of them through leash takes a few.
  const TOKENS = Number(process.env.RELAY_TOKENS ?? 200);
  const idleRss = rssKb();
  const latency: Record<string, ReturnType<typeof summarize>> = {};
  const wholeRun: Record<string, ReturnType<typeof summarize>> = {};
  const cpuPerDelta: Record<string, { steady: number; kind: Window['kind']; whole: number }> = {};
  // RELAY_PHASES (comma-separated) runs only some of the three, e.g. to profile leash alone.
  const phases = (process.env.RELAY_PHASES ?? 'direct,bare relay,leash SSE').split(',');
  for (const name of (['direct', 'bare relay', 'leash SSE'] as const).filter((p) => phases.includes(p))) {
    const samples = Array.from({ length: STREAMS }, newSample);
    let peakRss = 0;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssKb())), 250);
    // The relaying process's CPU (all its threads), to be read over the steady window.
    const relayCpu =
      name === 'leash SSE'
        ? cpuTrace(serverCpu)
        : name === 'bare relay'
          ? cpuTrace(() => processCpu(bareProc.pid))
          : null;
    const cpu0 = {
      server: serverCpu(),
      threads: serverThreadsCpu(),
      client: process.cpuUsage(),
      upstream: upstreamCpu(),
      bare: processCpu(bareProc.pid),
      sys: processSys(name === 'leash SSE' ? server.pid : bareProc.pid),
      sched: mainSched(),
      at: performance.now(),
    };
    // prom-client resets its event loop delay histogram at each scrape: this one starts the phase's.
    if (name === 'leash SSE') await serverLoopLag();
    // Stagger the starts over one token interval so the ticks don't all coincide.
    await Promise.all(
      samples.map(async (s, i) => {
        await new Promise((r) => setTimeout(r, (i * 50) / STREAMS));
        await paths[name]!(`relay-20-${TOKENS}`, s);
      }),
    );
    clearInterval(sampler);
    relayCpu?.stop();
    const wall = (performance.now() - cpu0.at) / 1000;
    const client = process.cpuUsage(cpu0.client);
    const pct = (sec: number): string => `${Math.round((sec / wall) * 100)} %`;
    const threads = serverThreadsCpu();
    row(
      `${name}: CPU busy, relay (leash: event loop + SQLite thread + GC/libuv) · upstream · this client (${STREAMS} streams)`,
      `${
        name === 'direct'
          ? '—'
          : name === 'bare relay'
            ? pct(processCpu(bareProc.pid) - cpu0.bare)
            : `${pct(serverCpu() - cpu0.server)} (${pct(threads.main - cpu0.threads.main)} + ${pct(threads.worker - cpu0.threads.worker)} + ${pct(threads.other - cpu0.threads.other)})`
      } · ${pct(upstreamCpu() - cpu0.upstream)} · ${pct((client.user + client.system) / 1e6)}`,
    );
    if (name !== 'direct') {
      const sys = processSys(name === 'leash SSE' ? server.pid : bareProc.pid) - cpu0.sys;
      row(`${name}: relay process CPU in the kernel (socket calls, wake-ups)`, pct(sys));
    }
    if (name === 'leash SSE') {
      const lag = await serverLoopLag();
      row(`${name}: the server's event loop delay p50 / p99 / max (its /metrics)`, lag);
      const sched = mainSched();
      const ms = wall * 1000;
      row(
        `${name}: event loop thread on a core · waiting for a core`,
        `${Math.round(((sched.run - cpu0.sched.run) / ms) * 100)} % · ${Math.round(((sched.wait - cpu0.sched.wait) / ms) * 100)} %`,
      );
    }
    const whole = summarize(samples.flatMap((s) => s.latencies));
    const steady = steadyState(samples);
    const lat = summarize(steady.latencies);
    const got = samples.reduce((n, s) => n + s.count, 0);
    const seconds = ((steady.to - steady.from) / 1000).toFixed(1);
    row(`${name}: per-delta latency p50 / p99, whole run (${whole.n} deltas)`, `${fmt(whole.p50)} / ${fmt(whole.p99)}`);
    console.log(`  steady window: ${steady.label}, ${seconds} s, ${lat.n} deltas`);
    row(`${name}: per-delta latency p50, steady (n=${lat.n})`, fmt(lat.p50));
    row(`${name}: per-delta latency p99, steady (n=${lat.n})`, fmt(lat.p99));
    if (relayCpu && lat.n > 0) {
      // Over the whole phase too (for leash that includes the tasks' creates and ends).
      const first = Math.min(...samples.map((x) => x.first));
      const lastAt = Math.max(...samples.map((x) => x.last));
      const c = {
        steady: (relayCpu.over(steady.from, steady.to) * 1e6) / lat.n,
        kind: steady.kind,
        whole: (relayCpu.over(first, lastAt) * 1e6) / whole.n,
      };
      cpuPerDelta[name] = c;
      row(
        `${name}: relay process CPU per delta, steady (n=${lat.n}) · whole run`,
        `${c.steady.toFixed(1)} · ${c.whole.toFixed(1)} µs`,
      );
    }
    if (got !== STREAMS * TOKENS) console.log(`  ! ${name} received ${got}/${STREAMS * TOKENS} tokens`);
    if (name === 'leash SSE') {
      row('server RSS per open stream', `${(((peakRss - idleRss) * 1024) / STREAMS / 1024).toFixed(1)} KB`);
    }
    latency[name] = lat;
    wholeRun[name] = whole;
  }
  const d = latency.direct;
  const b = latency['bare relay'];
  const l = latency['leash SSE'];
  const dw = wholeRun.direct;
  const lw = wholeRun['leash SSE'];
  console.log();
  if (d === undefined || b === undefined || l === undefined || dw === undefined || lw === undefined) {
    console.log('  (not every phase ran: no comparisons)');
  } else if (d.n === 0 || b.n === 0 || l.n === 0) {
    console.log('  ! a steady window had no deltas: no added-latency figures (see the windows above)');
  } else {
    row('added by leash, whole run (information): p50 · p99', `${fmt(lw.p50 - dw.p50)} · ${fmt(lw.p99 - dw.p99)}`);
    row(`added by the bare relay (the floor), steady: p50 · p99`, `${fmt(b.p50 - d.p50)} · ${fmt(b.p99 - d.p99)}`);
    row(`added by leash, steady: per-delta latency p50`, fmt(l.p50 - d.p50));
    row(`added by leash, steady: per-delta latency p99`, fmt(l.p99 - d.p99), '≤ 10 ms', l.p99 - d.p99 <= 10);
  }
  const lc = cpuPerDelta['leash SSE'];
  const bc = cpuPerDelta['bare relay'];
  if (lc !== undefined && bc !== undefined) {
    // Judged on the steady window when both relays had the same kind of window; when
    // one fell back, the two windows are not alike and the whole runs are compared.
    const same = lc.kind === bc.kind;
    const [l1, b1] = same ? [lc.steady, bc.steady] : [lc.whole, bc.whole];
    if (!same)
      console.log(`  ! steady windows of different kinds (${lc.kind} / ${bc.kind}): CPU judged over whole runs`);
    row(
      `leash CPU per delta / bare relay's, ${same ? 'steady' : 'whole run'} (${l1.toFixed(1)} / ${b1.toFixed(1)} µs)`,
      `${(l1 / b1).toFixed(2)}×`,
      '≤ 1.3×',
      l1 / b1 <= 1.3,
    );
  }
} finally {
  server.kill('SIGTERM');
  upstreamProc.kill();
  bareProc.kill();
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
