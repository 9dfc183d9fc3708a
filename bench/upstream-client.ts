// Parent side of bench/upstream-process.ts.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface RemoteUpstream {
  baseURL: string;
  /** Resolves once n requests have arrived in total. */
  waitForRequests(n: number): Promise<void>;
  /** When the request's socket closed (ms, system monotonic clock: see nowMono), and tokens written after the client left. */
  waitForSocketClose(index: number): Promise<{ closedAt: number; tokensAfter: number }>;
  close(): Promise<void>;
}

export { nowMono as nowAbs } from './lib.ts';

export async function startRemoteUpstream(env: Record<string, string> = {}): Promise<RemoteUpstream> {
  const child = fork(fileURLToPath(new URL('./upstream-process.ts', import.meta.url)), [], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 1;
  const pending = new Map<number, (m: Record<string, unknown>) => void>();
  const baseURL = await new Promise<string>((resolve) => {
    child.on('message', (m: Record<string, unknown>) => {
      if (typeof m.ready === 'string') resolve(m.ready);
      else {
        pending.get(m.id as number)?.(m);
        pending.delete(m.id as number);
      }
    });
  });
  const call = (msg: Record<string, unknown>): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      child.send({ ...msg, id });
    });
  return {
    baseURL,
    waitForRequests: async (n) => void (await call({ cmd: 'wait-request', n })),
    waitForSocketClose: async (index) => {
      const r = await call({ cmd: 'wait-close', index });
      return { closedAt: r.closedAt as number, tokensAfter: r.tokensAfter as number };
    },
    close: async () => void (await call({ cmd: 'close' })),
  };
}
