// A real `leash serve` in a child process, for the tests that need whole nodes (cluster,
// PostgreSQL restart) and the benchmarks that measure one: started on port 0, its URL read from its first line,
// its stderr kept for failure messages.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const MAIN = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

export interface ServeProcess {
  name: string;
  url: string;
  proc: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal) once the process is gone. */
  exited: Promise<number | null>;
  stderr(): string;
}

export interface ServeProcessOptions {
  /** More `leash serve` arguments (e.g. `--db path`). */
  args?: string[];
  /** Node's own flags (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  startTimeoutMs?: number;
}

/** Starts `leash serve --port 0` with `env` over the current environment; rejects if it exits first. */
export async function startServeProcess(
  name: string,
  env: Record<string, string>,
  opts: ServeProcessOptions = {},
): Promise<ServeProcess> {
  const { args = [], nodeArgs = [], startTimeoutMs = 20_000 } = opts;
  const proc = spawn(process.execPath, [...nodeArgs, MAIN, 'serve', '--port', '0', ...args], {
    // LEASH_MODEL set: an Ollama on the developer's machine must not change what tests run.
    env: {
      ...process.env,
      LEASH_LOG_LEVEL: 'warn',
      LEASH_API_KEYS: '',
      HOST: '',
      PORT: '',
      LEASH_MODEL: 'simulated',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => proc.on('close', r));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not start in ${startTimeoutMs} ms:\n${err}`)),
      startTimeoutMs,
    );
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /leash listening on (http:\/\/\S+)/.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before listening:\n${err}`));
    });
  });
  return { name, url, proc, exited, stderr: () => err };
}

/** Whether the process is still running. */
export const isAlive = (p: ServeProcess): boolean => p.proc.exitCode === null && p.proc.signalCode === null;
