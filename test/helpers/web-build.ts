// `npm test` builds the web UI first (pretest); a test file run on its own builds it
// here when the sources are newer than web/dist.

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const DIST_INDEX = join(ROOT, 'web', 'dist', 'index.html');

/** Newest modification time under the given paths. */
function newest(paths: string[]): number {
  let max = 0;
  for (const p of paths) {
    if (!existsSync(p)) continue;
    const st = statSync(p);
    if (st.isDirectory()) max = Math.max(max, newest(readdirSync(p).map((f) => join(p, f))));
    else max = Math.max(max, st.mtimeMs);
  }
  return max;
}

export function ensureWebBuilt(): void {
  const sources = newest(
    ['web/src', 'web/index.html', 'web/vite.config.ts', 'web/public', 'src/client'].map((p) => join(ROOT, p)),
  );
  if (existsSync(DIST_INDEX) && statSync(DIST_INDEX).mtimeMs >= sources) return;
  execFileSync(
    process.execPath,
    [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', 'web', '--logLevel', 'warn'],
    { cwd: ROOT, stdio: 'inherit' },
  );
}
