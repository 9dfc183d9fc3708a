// Benchmark of the relay (issue 4): a model stream through leash vs straight from
// the upstream. Three processes: the upstream (bench/relay-upstream.ts), a real
// `leash serve`, and this client. Each token carries its send time, so latency is
// measured per delta on one clock (absolute ms).
//  1. tokens/s of one burst stream: direct, leash SSE, leash WebSocket, leash /v1/chat/completions
//     (goal ≥ 0.9× direct);
//  2. 1,000 concurrent streams at 20 tokens/s: per-delta latency p50/p99 direct and through
//     leash SSE, the difference is what leash adds (goal p99 ≤ 10 ms), and server RSS per stream.
// Run: npm run bench:relay   (or: npx node bench/relay.ts [streams] [burstTokens])

import { fork } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
const serve = await startServeProcess(
  'leash serve',
  {
    OPENAI_BASE_URL: upstreamUrl,
    OPENAI_API_KEY: 'bench',
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
/** CPU seconds (user + system) the server process has used so far. */
const serverCpu = (): number => {
  const f = readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
};
const rssKb = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))![1]);

interface Sample {
  latencies: number[];
  first: number;
  last: number;
  count: number;
}
const newSample = (): Sample => ({ latencies: [], first: 0, last: 0, count: 0 });
const TOKEN = /(\d+\.\d+)\|/g;
function record(s: Sample, text: string): void {
  const now = abs();
  for (const m of text.matchAll(TOKEN)) {
    if (s.count++ === 0) s.first = now;
    s.last = now;
    s.latencies.push(now - Number(m[1]));
  }
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
    await run('relay-0-500', newSample()); // warm-up
    const s = newSample();
    const t0 = abs();
    await run(`relay-0-${BURST}`, s);
    // From the request to the last token: merged deltas must not look like infinite speed.
    rates[name] = s.count / ((s.last - t0) / 1000);
    if (s.count !== BURST) console.log(`  ! ${name} received ${s.count}/${BURST} tokens`);
  }
  row('reference: tokens/s straight from the upstream', `${Math.round(rates.direct!)} /s`);
  for (const name of ['leash SSE', 'leash WebSocket', 'leash /v1/chat/completions']) {
    const ratio = rates[name]! / rates.direct!;
    row(
      `${name}: tokens/s (ratio to direct)`,
      `${Math.round(rates[name]!)} (${ratio.toFixed(2)}×)`,
      '≥ 0.9×',
      ratio >= 0.9,
    );
  }

  // 2. Many concurrent slow streams: per-delta latency and memory.
  const TOKENS = 100; // 5 s at 20 tokens/s
  const idleRss = rssKb();
  const latency: Record<string, ReturnType<typeof summarize>> = {};
  for (const name of ['direct', 'leash SSE'] as const) {
    const samples = Array.from({ length: STREAMS }, newSample);
    let peakRss = 0;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssKb())), 250);
    const cpu0 = { server: serverCpu(), client: process.cpuUsage(), at: performance.now() };
    // Stagger the starts over one token interval so the ticks don't all coincide.
    await Promise.all(
      samples.map(async (s, i) => {
        await new Promise((r) => setTimeout(r, (i * 50) / STREAMS));
        await paths[name]!(`relay-20-${TOKENS}`, s);
      }),
    );
    clearInterval(sampler);
    const wall = (performance.now() - cpu0.at) / 1000;
    const client = process.cpuUsage(cpu0.client);
    row(
      `${name}: CPU busy, server · this client (${STREAMS} streams)`,
      `${name === 'direct' ? '—' : `${Math.round(((serverCpu() - cpu0.server) / wall) * 100)} %`} · ${Math.round(((client.user + client.system) / 1e6 / wall) * 100)} %`,
    );
    const lat = summarize(samples.flatMap((s) => s.latencies));
    const got = samples.reduce((n, s) => n + s.count, 0);
    row(`${name}: per-delta latency p50 (${STREAMS} streams)`, fmt(lat.p50));
    row(`${name}: per-delta latency p99`, fmt(lat.p99));
    if (got !== STREAMS * TOKENS) console.log(`  ! ${name} received ${got}/${STREAMS * TOKENS} tokens`);
    if (name === 'leash SSE') {
      row('server RSS per open stream', `${(((peakRss - idleRss) * 1024) / STREAMS / 1024).toFixed(1)} KB`);
    }
    latency[name] = lat;
  }
  const d = latency.direct!;
  const l = latency['leash SSE']!;
  row('added by leash: per-delta latency p50', fmt(l.p50 - d.p50));
  row('added by leash: per-delta latency p99', fmt(l.p99 - d.p99), '≤ 10 ms', l.p99 - d.p99 <= 10);
} finally {
  server.kill('SIGTERM');
  upstreamProc.kill();
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
