// API key lookup time by which key is presented: the first configured key, the
// last, a near miss and a short miss, 200 keys configured. A lookup that stopped at
// the first match would make the first key ~200× cheaper than a miss. The test suite
// proves the comparison count by construction; this prints what the clock says.
//   npm run bench:key-compare

import { createKeyMatcher } from '../src/server/auth.ts';

const keys = new Map(
  Array.from({ length: 200 }, (_, i) => [`sk-${String(i).padStart(4, '0')}-${'k'.repeat(40)}`, `owner${i}`]),
);
const all = [...keys.keys()];
const match = createKeyMatcher(keys);
const candidates: Record<string, string> = {
  first: all[0]!,
  last: all.at(-1)!,
  near_miss: all[0]!.slice(0, -1) + 'x',
  short_miss: 'x',
};
const names = Object.keys(candidates);
const samples = names.map((): number[] => []);
for (let round = 0; round < 200; round++) {
  names.forEach((n, i) => {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < 100; k++) match(candidates[n]!);
    samples[i]!.push(Number(process.hrtime.bigint() - t0) / 100);
  });
}
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;
const med = samples.map((s) => pct(s, 0.5));
for (const [i, n] of names.entries()) {
  console.log(
    `${n.padEnd(10)} p50 ${(med[i]! / 1000).toFixed(1)} µs  p90 ${(pct(samples[i]!, 0.9) / 1000).toFixed(1)} µs per lookup`,
  );
}
console.log(`max/min p50 ratio: ${(Math.max(...med) / Math.min(...med)).toFixed(2)}× (an early exit would be ~200×)`);
