// `npm test` on a machine without Chromium or tmux stops at once and says what to install.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

const PREFLIGHT = new URL('./preflight.ts', import.meta.url).pathname;

function preflight(env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [PREFLIGHT], { env, encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr };
}

describe('test preflight', () => {
  it('passes on this machine (it has what the suite needs)', () => {
    assert.deepEqual(preflight(process.env), { code: 0, stderr: '' });
  });

  it('without Chromium and tmux: exits 1 and names both, with the apt-get line', () => {
    const r = preflight({ PATH: '/nonexistent', LEASH_CHROMIUM: '/nonexistent/chromium' });
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    assert.match(lines[0]!, /^npm test needs programs this machine does not have:$/);
    assert.match(r.stderr, /Chromium at \/nonexistent\/chromium.*apt-get install chromium/);
    assert.match(r.stderr, /tmux.*apt-get install tmux/);
    assert.equal(lines.length, 3, 'nothing else: no stack trace');
  });
});
