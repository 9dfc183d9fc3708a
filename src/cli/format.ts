// Plain-text formatting for the client commands: tables, ages, durations,
// progress bars and one-line task endings. No colours: the same text goes to a
// terminal, a pipe or a test.

import type { Task } from '../client/index.ts';
import { usage } from './common.ts';

/** `5s`, `3m`, `2h`, `4d` since `iso` (never negative: clocks of client and server differ a little). */
export function formatAge(iso: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '?';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `10m`, `90s`, `1h30m`, `2d`, `500ms` → milliseconds; anything else is a usage error naming `flag`. */
export function parseDuration(raw: string, flag: string): number {
  const s = raw.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * (UNITS[m[2] ?? ''] ?? NaN);
    matched = re.lastIndex;
  }
  if (s === '' || matched !== s.length || !Number.isFinite(total) || total <= 0) {
    throw usage(`Invalid ${flag} "${raw}": expected a duration such as 30s, 10m, 2h or 1d.`);
  }
  return total;
}

/** `[██████░░░░░░]` for 0–100; an indeterminate bar (null) is all dots. */
export function progressBar(progress: number | null, width = 30): string {
  if (progress === null || !Number.isFinite(progress)) return `[${'·'.repeat(width)}]`;
  const p = Math.min(100, Math.max(0, progress));
  const full = Math.round((p / 100) * width);
  return `[${'█'.repeat(full)}${'░'.repeat(width - full)}]`;
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatProgress(task: Pick<Task, 'progress' | 'status'>): string {
  return task.progress === null ? '-' : `${Math.round(task.progress)}%`;
}

/** `leash tasks`: id, type, status, progress, age. */
export function taskTable(tasks: Task[], now: number = Date.now()): string {
  return table([
    ['ID', 'TYPE', 'STATUS', 'PROGRESS', 'AGE'],
    ...tasks.map((t) => [t.id, t.type, t.status, formatProgress(t), formatAge(t.created_at, now)]),
  ]);
}

/** How a task ended, in a few words: `completed`, `cancelled (user)`, `failed: model_error: …`. */
export function describeEnd(task: Pick<Task, 'status' | 'cancel' | 'error'>): string {
  if (task.status === 'cancelled') return `cancelled${task.cancel ? ` (${task.cancel.reason})` : ''}`;
  if (task.status === 'failed') return task.error ? `failed: ${task.error.code}: ${task.error.message}` : 'failed';
  return task.status;
}
