// A real Python worker process (test/fixtures/workers/py_worker.py, the SDK in
// clients/python) for the remote-worker tests, and a raw WebSocket "worker" that
// speaks the protocol frame by frame.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';

export const PYTHON = '/usr/bin/python3';
const SCRIPT = join(import.meta.dirname, '..', 'fixtures', 'workers', 'py_worker.py');

export interface PyWorker {
  proc: ChildProcess;
  /** The worker id of the first connection ("" when it failed). */
  id: string;
  /** The process's stdout and stderr so far. */
  output(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts the fixture worker and resolves once it printed `ready` (or exited). */
export async function startPyWorker(
  url: string,
  key = '',
  env: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<PyWorker> {
  const proc = spawn(PYTHON, [SCRIPT, url, key], {
    env: { ...process.env, PYTHONUNBUFFERED: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((r) => proc.on('close', r));
  const id = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`python worker not ready in ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const check = (): void => {
      const m = /ready (\S+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    proc.stdout!.on('data', check);
    void exited.then(() => {
      clearTimeout(timer);
      resolve('');
    });
  });
  return {
    proc,
    id,
    output: () => out,
    exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Reads a JSON marker file a handler wrote, waiting for it. */
export async function waitForMarker(path: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    } catch {
      if (Date.now() > until) throw new Error(`no marker at ${path} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** A protocol-level worker: sends frames as given, records every frame received. */
export class RawWorker {
  readonly ws: WebSocket;
  readonly frames: Array<Record<string, unknown>> = [];
  readonly #waiters: Array<() => void> = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number }>;

  constructor(url: string, key?: string) {
    const wsUrl = url.replace(/^http/, 'ws') + '/api/workers/connect';
    this.ws = new WebSocket(wsUrl, key ? { headers: { authorization: `Bearer ${key}` } } : {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
    this.closed = new Promise((r) => this.ws.once('close', (code) => r({ code })));
    this.ws.on('message', (d) => {
      this.frames.push(JSON.parse(String(d)) as Record<string, unknown>);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The first frame received (from index `from`) matching `pred`. */
  async next(
    pred: (f: Record<string, unknown>) => boolean,
    timeoutMs = 5000,
    from = 0,
  ): Promise<Record<string, unknown>> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.slice(from).find(pred);
      if (f) return f;
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no matching frame in ${timeoutMs} ms; got ${JSON.stringify(this.frames)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  close(): void {
    this.ws.terminate();
  }
}
