import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { ModelRegistry } from '../../src/models/model.ts';
import type { AnyTaskDefinition } from '../../src/runtime/define-task.ts';
import { Runtime, type RuntimeOptions } from '../../src/runtime/runtime.ts';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts';

export const silentLogger = pino({ level: process.env.LEASH_TEST_LOG ?? 'silent' });

export const noModels: ModelRegistry = {
  defaultModel: 'none',
  allowedModels: ['none'],
  check: () => {},
  resolve() {
    throw new Error('no models in this test');
  },
  list: () => [],
};

export function tempDbPath(): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'leash-test-'));
  return { path: join(dir, 'leash.db'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestRuntime {
  runtime: Runtime;
  store: SqliteStore;
  dbPath: string;
  close(): Promise<void>;
}

/** A started Runtime on a fresh SQLite file. `close()` also checks that nothing leaked. */
export async function startRuntime(
  tasks: AnyTaskDefinition[],
  opts: Partial<RuntimeOptions> & { dbPath?: string } = {},
): Promise<TestRuntime> {
  const tmp = opts.dbPath ? null : tempDbPath();
  const dbPath = opts.dbPath ?? tmp!.path;
  const store = SqliteStore.open(dbPath);
  await store.migrate();
  const runtime = new Runtime({ store, models: noModels, logger: silentLogger, tasks, ...opts });
  await runtime.start();
  return {
    runtime,
    store,
    dbPath,
    async close() {
      await runtime.stop({ graceMs: 0 });
      const leaked = { active: runtime.activeCount, listeners: runtime.eventLog.listenerCount };
      await store.close();
      tmp?.cleanup();
      if (leaked.active !== 0 || leaked.listeners !== 0) {
        throw new Error(`runtime leaked: ${JSON.stringify(leaked)}`);
      }
    },
  };
}
