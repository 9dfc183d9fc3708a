// The architecture rules of `npm run lint` (import floors, no circles, no long files)
// also hold in `npm test`, which is what CI runs: a change that breaks a floor fails here.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const opts = { cwd: new URL('..', import.meta.url), maxBuffer: 16 * 1024 * 1024 };

async function check(cmd: string, args: string[]): Promise<void> {
  try {
    await run(cmd, args, opts);
  } catch (e) {
    const { stdout, stderr } = e as { stdout?: string; stderr?: string };
    assert.fail(`${cmd} ${args.join(' ')} failed:\n${stdout ?? ''}${stderr ?? ''}`);
  }
}

describe('architecture', () => {
  it('imports: no circles, no import up a floor, core imports nothing of leash, the client only core', async () => {
    await check(process.execPath, [
      'node_modules/dependency-cruiser/bin/dependency-cruiser.mjs',
      'src',
      'web/src',
      '--config',
      '.dependency-cruiser.mjs',
    ]);
    await check(process.execPath, ['scripts/check-known-violations.ts']);
  });

  it('no file in src/ over 450 lines unless its header says why', async () => {
    await check(process.execPath, ['scripts/check-file-length.ts']);
  });
});
