// The two stores are laid out by operation, one file per operation under the same name
// in sqlite/ and postgres/ (as graphile-worker's src/sql/): a reader comparing how the
// two do one thing opens two files of the same name. This keeps it so.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { it } from 'node:test';

// Files that belong to one store only: its plumbing, not an operation.
const ONLY_SQLITE = new Set(['insert-event.ts', 'worker-entry.ts', 'worker-protocol.ts', 'worker-store.ts']);
const ONLY_POSTGRES = new Set<string>();
const FRONTS = new Set(['sqlite-store.ts', 'postgres-store.ts']);

const operations = (dir: string, own: Set<string>): string[] =>
  readdirSync(new URL(`../src/store/${dir}/`, import.meta.url))
    .filter((f) => f.endsWith('.ts') && !own.has(f) && !FRONTS.has(f))
    .sort();

it('sqlite/ and postgres/ hold the same operation files', () => {
  assert.deepEqual(operations('sqlite', ONLY_SQLITE), operations('postgres', ONLY_POSTGRES));
});
