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
