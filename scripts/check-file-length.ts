// Part of `npm run lint`: no file in src/ is longer than MAX_LINES unless one of its
// first HEADER_LINES lines is a comment saying why, e.g.
//   // Long because: one state machine that reads best whole.
// Small files named for what they hold are the rule; a long one must say why it is one.
//
// KNOWN_LONG lists the files that are too long today and are being split on other
// branches (issue #17); delete an entry once its split is merged. An entry whose file
// is no longer too long is an error too, so the list only shrinks.

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const MAX_LINES = 450;
const HEADER_LINES = 15;
const ROOT = 'src';
const REASON = /^\s*(?:\/\/|\/?\*+)\s*long because\s*:\s*\S.{10,}/i;

const KNOWN_LONG: Record<string, string> = {};

const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const path = join(dir, d.name);
    if (d.isDirectory()) return files(path);
    return /\.(?:ts|tsx|js|mjs|cjs)$/.test(d.name) ? [path] : [];
  });

const problems: string[] = [];
const seen = new Set<string>();
for (const path of files(ROOT).sort()) {
  const name = relative('.', path).split('\\').join('/');
  const lines = readFileSync(path, 'utf8').split('\n');
  const count = lines.at(-1) === '' ? lines.length - 1 : lines.length;
  if (count <= MAX_LINES) continue;
  if (lines.slice(0, HEADER_LINES).some((l) => REASON.test(l))) continue;
  if (Object.hasOwn(KNOWN_LONG, name)) {
    seen.add(name);
    continue;
  }
  problems.push(
    `${name}: ${count} lines (most ${MAX_LINES}). Split it into files named for what they hold, or say in a comment within its first ${HEADER_LINES} lines "// Long because: <why>".`,
  );
}
for (const name of Object.keys(KNOWN_LONG)) {
  if (!seen.has(name)) {
    problems.push(
      `${name} is in KNOWN_LONG (scripts/check-file-length.ts) but is no longer too long: delete its entry.`,
    );
  }
}

if (problems.length > 0) {
  process.stderr.write(`${problems.join('\n')}\n`);
  process.exitCode = 1;
} else if (seen.size > 0) {
  process.stdout.write(
    `file length: ok (${seen.size} known long file(s) still listed in scripts/check-file-length.ts)\n`,
  );
}
