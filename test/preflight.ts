// `npm test`'s first step: the system programs the suite drives, checked before
// anything is built, so a fresh machine fails in its first lines with what to
// install instead of half-way through with a stack trace. Exits 1 if any is missing.
//   node test/preflight.ts

import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

interface Need {
  what: string;
  ok: () => boolean;
  install: string;
}

const chromium = process.env.LEASH_CHROMIUM || '/usr/bin/chromium';

function runs(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

const needs: Need[] = [
  {
    what: `Node.js 24 or later (this is ${process.version})`,
    ok: () => Number(process.versions.node.split('.')[0]) >= 24,
    install: 'run it through npm (npm install brings Node 24: the `node` package) or install Node 24',
  },
  {
    what: `Chromium at ${chromium} (the web UI tests drive it)`,
    ok: () => {
      try {
        accessSync(chromium, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    },
    install: 'apt-get install chromium   (or set LEASH_CHROMIUM to a Chromium binary)',
  },
  {
    what: 'tmux (the CLI tests run the terminal UI in it)',
    ok: () => runs('tmux', ['-V']),
    install: 'apt-get install tmux',
  },
  {
    what: 'Python 3.11+ with websockets and pytest at /usr/bin/python3 (the Python worker SDK tests)',
    ok: () => runs('/usr/bin/python3', ['-c', 'import sys, websockets, pytest; assert sys.version_info >= (3, 11)']),
    install: 'apt-get install python3 python3-websockets python3-pytest',
  },
];

const missing = needs.filter((n) => !n.ok());
if (missing.length > 0) {
  const lines = missing.map((n) => `  - ${n.what}: ${n.install}`);
  process.stderr.write(`npm test needs programs this machine does not have:\n${lines.join('\n')}\n`);
  process.exit(1);
}
