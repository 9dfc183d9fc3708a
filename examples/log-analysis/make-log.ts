// Writes a synthetic Android log to analyse: `node make-log.ts logs/device.log 200000`
// (lines; default 200,000 ≈ 20 MB), with an ANR, a crash, a native crash or a
// tombstone every few thousand lines. Deterministic: the same count gives the same file.

import { createWriteStream } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export async function makeLog(path: string, lines: number): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  const events = [
    (n: number) => `E ActivityManager: ANR in com.example.app${n % 7} (com.example/.MainActivity)`,
    (n: number) => `E AndroidRuntime: FATAL EXCEPTION: worker-${n % 5}`,
    () => 'F libc    : Fatal signal 11 (SIGSEGV), code 1, fault addr 0x0 in tid 4242',
    () => '*** *** *** *** *** *** *** *** *** *** *** *** *** *** *** ***',
    () => 'E art     : java.lang.OutOfMemoryError: Failed to allocate a 1048576 byte allocation',
  ];
  for (let i = 1; i <= lines; i++) {
    const t = new Date(Date.UTC(2026, 0, 1) + i * 10).toISOString().slice(5, 23).replace('T', ' ');
    const line =
      i % 2999 === 0
        ? events[(i / 2999) % events.length]!(i)
        : `I chatty  : uid=10${i % 90} com.example.app${i % 7} identical ${i % 13} lines; frame ${i}`;
    if (!out.write(`${t}  ${1000 + (i % 300)}  ${2000 + (i % 50)} ${line}\n`)) {
      await new Promise<void>((r) => out.once('drain', () => r()));
    }
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

if (import.meta.main) {
  const [path = 'logs/device.log', count = '200000'] = process.argv.slice(2);
  await makeLog(path, Number(count));
  console.log(`wrote ${count} lines to ${path}`);
}
