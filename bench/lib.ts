// Small helpers shared by the benchmark scripts: percentiles and a uniform printout.

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(samples: number[]): { n: number; p50: number; p99: number; max: number; mean: number } {
  const s = [...samples].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    max: s.at(-1) ?? NaN,
    mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
  };
}

export const fmt = (ms: number): string => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);

export function row(label: string, value: string, goal?: string, ok?: boolean): void {
  const mark = ok === undefined ? '' : ok ? '  ✓' : '  ✗ (misses goal)';
  console.log(`${label.padEnd(52)} ${value.padStart(16)}${goal ? `   goal ${goal}` : ''}${mark}`);
}

export function header(title: string): void {
  console.log(`\n== ${title} (node ${process.version}, ${new Date().toISOString()})`);
}

// One clock for several processes: CLOCK_MONOTONIC (process.hrtime) is system-wide,
// unlike performance.timeOrigin, which each process sets from the wall clock at start.
const MONO_OFFSET = Number(process.hrtime.bigint()) / 1e6 - performance.now();

/** Milliseconds on the system's monotonic clock, comparable across processes. */
export const nowMono = (): number => Number(process.hrtime.bigint()) / 1e6;

/** A `performance.now()` reading of this process on the system's monotonic clock. */
export const toMono = (perfNow: number): number => perfNow + MONO_OFFSET;

/** One figure of a run: its value, how to print it, and the goal it is judged on. */
export interface Figure {
  value: number;
  show: (v: number) => string;
  goal?: string;
  ok?: (v: number) => boolean;
}

/** How many times a short script runs in one invocation (BENCH_RUNS overrides; 3 by default). */
export const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));

/**
 * Runs `once` `times` times in this process and prints each figure as its median over
 * the runs and its spread (min–max, and max−min as a share of the median), judging the
 * goal on the median: one run on a shared machine moves with the load, three runs in a
 * row show how far. The figures are printed in the order the first run returned them.
 */
export async function repeat(
  once: (run: number) => Promise<Record<string, Figure>>,
  times = RUNS,
): Promise<Record<string, { median: number; min: number; max: number }>> {
  const runs: Array<Record<string, Figure>> = [];
  for (let i = 0; i < times; i++) {
    runs.push(await once(i));
    console.log(`  (run ${i + 1} of ${times} done)`);
  }
  const out: Record<string, { median: number; min: number; max: number }> = {};
  console.log(`\nmedian of ${times} runs (spread: min–max, ±% of the median)`);
  for (const [label, first] of Object.entries(runs[0]!)) {
    const values = runs.map((r) => r[label]?.value ?? NaN).filter(Number.isFinite);
    if (values.length === 0) continue;
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
    const min = sorted[0]!;
    const max = sorted.at(-1)!;
    const spread = median === 0 ? 0 : ((max - min) / 2 / median) * 100;
    out[label] = { median, min, max };
    const shown =
      times === 1
        ? first.show(median)
        : `${first.show(median)} (${first.show(min)}–${first.show(max)}, ±${spread.toFixed(0)} %)`;
    row(label, shown, first.goal, first.ok ? first.ok(median) : undefined);
  }
  return out;
}
