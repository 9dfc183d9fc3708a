// Warm pools of worker threads and child processes for isolated handlers. A slot
// that ran a task to its end goes back to the pool; one that was killed or
// crashed is replaced. Killing is the point of isolation: a worker is terminated
// (V8 stops even a busy loop), a process group gets SIGTERM, then SIGKILL.

import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { isolatedEnv } from './env.ts';
import type { FromChild, ToChild } from './protocol.ts';

export type SlotKind = 'worker' | 'process';

export interface SlotExit {
  code: number | null;
  signal: string | null;
  /** What the worker threw, or the tail of the process's stderr. */
  error: unknown;
  stderrTail: string;
}

export interface Slot {
  readonly kind: SlotKind;
  /** OS process id (process slots) — used to read its CPU time. */
  readonly pid: number | null;
  send(msg: ToChild): void;
  onMessage: ((msg: FromChild) => void) | null;
  onExit: ((exit: SlotExit) => void) | null;
  readonly exited: boolean;
  /** Stops the slot for good; resolves once it is gone. */
  kill(): Promise<void>;
}

const KILL_AFTER_TERM_MS = 500;
const STDERR_TAIL = 4096;

export interface PoolOptions {
  kind: SlotKind;
  /** V8 old-space limit of each slot. */
  memoryLimitMb: number;
  /** Slots kept warm after use. */
  maxIdle: number;
  /** Environment names passed through beyond the default allowlist (src/runtime/isolation/env.ts). */
  env?: readonly string[];
}

export class IsolationPool {
  readonly #opts: PoolOptions;
  #idle: Slot[] = [];
  #live = new Set<Slot>();
  #closed = false;
  /** How many slots were started (a cold start each); benchmarks read it. */
  spawned = 0;

  constructor(opts: PoolOptions) {
    this.#opts = opts;
  }

  get size(): number {
    return this.#live.size;
  }

  async acquire(): Promise<Slot> {
    if (this.#closed) throw new Error('isolation pool is closed');
    for (let s = this.#idle.pop(); s; s = this.#idle.pop()) if (!s.exited) return s;
    return this.#spawn();
  }

  /** A slot whose task ended normally: kept warm, or stopped past `maxIdle`. */
  release(slot: Slot): void {
    slot.onMessage = null;
    if (slot.exited) return;
    if (this.#closed || this.#idle.length >= this.#opts.maxIdle) void slot.kill();
    else this.#idle.push(slot);
  }

  /** Starts `n` slots ahead of need, so the first tasks don't pay a cold start. */
  async prewarm(n: number): Promise<void> {
    const want = Math.min(n, this.#opts.maxIdle) - this.#idle.length;
    const slots = await Promise.all(Array.from({ length: Math.max(0, want) }, () => this.#spawn()));
    for (const s of slots) this.release(s);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#idle = [];
    await Promise.all([...this.#live].map((s) => s.kill()));
  }

  #spawn(): Promise<Slot> {
    this.spawned++;
    // Read at each spawn: a slot sees the server's environment as it is now, filtered.
    const env = isolatedEnv(process.env, this.#opts.env);
    const slot =
      this.#opts.kind === 'worker'
        ? workerSlot(this.#opts.memoryLimitMb, env)
        : processSlot(this.#opts.memoryLimitMb, env);
    this.#live.add(slot.slot);
    void slot.gone.then(() => {
      this.#live.delete(slot.slot);
      this.#idle = this.#idle.filter((s) => s !== slot.slot);
    });
    return slot.ready;
  }
}

interface Spawned {
  slot: Slot;
  ready: Promise<Slot>;
  gone: Promise<void>;
}

function makeSlot(kind: SlotKind, pid: number | null, send: (m: ToChild) => void, kill: () => Promise<void>) {
  let exited = false;
  let readyResolve!: () => void;
  let readyReject!: (e: unknown) => void;
  const readyP = new Promise<void>((res, rej) => ((readyResolve = res), (readyReject = rej)));
  const slot: Slot = {
    kind,
    pid,
    send: (m) => {
      if (!exited) send(m);
    },
    onMessage: null,
    onExit: null,
    get exited() {
      return exited;
    },
    kill,
  };
  const deliver = (m: FromChild): void => {
    if (m.t === 'ready') readyResolve();
    else slot.onMessage?.(m);
  };
  const exit = (e: SlotExit): void => {
    if (exited) return;
    exited = true;
    readyReject(new Error(`isolated ${kind} exited before it was ready (code ${e.code}, signal ${e.signal})`));
    slot.onExit?.(e);
  };
  return { slot, deliver, exit, ready: readyP.then(() => slot) };
}

// `.js` once built into dist/ (the installed package), `.ts` when run from source.
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const WORKER_ENTRY = new URL(`./worker-entry${EXT}`, import.meta.url);
const PROCESS_ENTRY = fileURLToPath(new URL(`./process-entry${EXT}`, import.meta.url));

function workerSlot(memoryLimitMb: number, env: Record<string, string>): Spawned {
  // `env`: without it a worker thread gets a copy of the server's whole process.env.
  const w = new Worker(WORKER_ENTRY, { env, resourceLimits: { maxOldGenerationSizeMb: memoryLimitMb } });
  let lastError: unknown = null;
  let goneResolve!: () => void;
  const gone = new Promise<void>((r) => (goneResolve = r));
  const s = makeSlot(
    'worker',
    null,
    (m) => w.postMessage(m),
    async () => {
      await w.terminate();
      await gone;
    },
  );
  w.on('message', (m: FromChild) => s.deliver(m));
  w.on('error', (err) => (lastError = err));
  w.on('exit', (code) => {
    s.exit({ code, signal: null, error: lastError, stderrTail: '' });
    goneResolve();
  });
  w.unref();
  return { slot: s.slot, ready: s.ready, gone };
}

/** The `--conditions` flags among Node's own arguments. */
export function resolutionConditions(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if (a.startsWith('--conditions=') || (a.startsWith('-C') && a.length > 2)) out.push(a);
    else if ((a === '--conditions' || a === '-C') && execArgv[i + 1] !== undefined) out.push(a, execArgv[++i]!);
  }
  return out;
}

function processSlot(memoryLimitMb: number, env: Record<string, string>): Spawned {
  const child: ChildProcess = fork(PROCESS_ENTRY, [], {
    env,
    // The parent's resolution conditions (--conditions / -C) so the handler's module resolves
    // its imports (e.g. `leash`) the way the server did.
    execArgv: [...resolutionConditions(process.execArgv), `--max-old-space-size=${memoryLimitMb}`],
    // Its own process group, so a kill reaches anything the handler spawned too.
    detached: true,
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    serialization: 'advanced',
  });
  let stderrTail = '';
  child.stderr?.on('data', (b: Buffer) => {
    process.stderr.write(b);
    stderrTail = (stderrTail + b.toString()).slice(-STDERR_TAIL);
  });
  let goneResolve!: () => void;
  const gone = new Promise<void>((r) => (goneResolve = r));
  const killGroup = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // already gone
    }
  };
  const s = makeSlot(
    'process',
    child.pid ?? null,
    (m) => child.send(m),
    async () => {
      if (!s.slot.exited) {
        killGroup('SIGTERM');
        const timer = setTimeout(() => killGroup('SIGKILL'), KILL_AFTER_TERM_MS);
        await gone;
        clearTimeout(timer);
      }
    },
  );
  child.on('message', (m: FromChild) => s.deliver(m));
  child.on('exit', (code, signal) => {
    s.exit({ code, signal, error: null, stderrTail });
    goneResolve();
  });
  child.on('error', () => {});
  child.unref();
  child.channel?.unref();
  return { slot: s.slot, ready: s.ready, gone };
}
