// Shared by the reliability, fuzz and isolation suites: a real in-process server
// whose log lines are kept (to look for errors and secrets), and the checks that
// every in-memory registry is back to zero.

import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { RunningServer, StartServerOptions } from '../src/cli/serve.ts';
import type { Runtime } from '../src/runtime/runtime.ts';
import { eventually, startOnTempDb } from './helpers/server.ts';

export interface LoggedServer {
  url: string;
  port: number;
  server: RunningServer;
  runtime: Runtime;
  /** Every log line written so far (JSON text, as pino wrote it). */
  logs: string[];
  /** Parsed log entries at or above a pino level (50 = error). */
  logsAtLeast(level: number): Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** Like startTestServer, but logs (at `level`, default debug) are captured in memory. */
export async function startLoggedServer(
  opts: Omit<StartServerOptions, 'db' | 'port' | 'host' | 'logger'> & { level?: string } = {},
): Promise<LoggedServer> {
  const logs: string[] = [];
  const { level, ...rest } = opts;
  const logger = pino({ level: level ?? 'debug' }, { write: (line: string) => void logs.push(line) });
  const { server, close } = await startOnTempDb('leash-rel-', logger, rest);
  return {
    url: server.url,
    port: server.port,
    server,
    runtime: server.runtime,
    logs,
    logsAtLeast: (min) =>
      logs
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => typeof e.level === 'number' && e.level >= min),
    close,
  };
}

/** The runtime's in-memory registries: tasks running here, event listeners, unwritten events. */
export function registries(rt: Runtime): { active: number; listeners: number; pending: number } {
  return { active: rt.activeCount, listeners: rt.eventLog.listenerCount, pending: rt.eventLog.pendingCount };
}

/** Waits until every registry is back to zero; fails naming the ones that are not. */
export async function assertRegistriesDrain(rt: Runtime, timeoutMs = 10_000): Promise<void> {
  try {
    await eventually(async () => {
      const r = registries(rt);
      return r.active === 0 && r.listeners === 0 && r.pending === 0;
    }, timeoutMs);
  } catch {
    assert.deepEqual(registries(rt), { active: 0, listeners: 0, pending: 0 }, 'in-memory registries back to zero');
  }
}

/** Asserts an HTTP error answer is leash's JSON shape with a code and a message. */
export function assertErrorShape(status: number, contentType: string | null, body: unknown, what: string): void {
  assert.ok((contentType ?? '').includes('application/json'), `${what}: ${status} must be JSON, got ${contentType}`);
  const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  assert.ok(
    typeof err?.code === 'string' && err.code !== '',
    `${what}: ${status} without error.code: ${JSON.stringify(body)?.slice(0, 300)}`,
  );
  assert.equal(typeof err.message, 'string', `${what}: error.message`);
}
