// A progress bar: determinate for 0–100, an animated stripe while the task
// runs without a known fraction (progress null).

import type { TaskStatus } from '../../../src/client/index.ts';

export function ProgressBar({ value, status, label }: { value: number | null; status: TaskStatus; label: string }) {
  const done = status === 'completed';
  const pct = done ? 100 : value;
  const indeterminate = pct === null && (status === 'running' || status === 'cancelling');
  return (
    <div
      className={`progress ${status}${indeterminate ? ' indeterminate' : ''}`}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      {...(pct !== null && { 'aria-valuenow': Math.round(pct) })}
    >
      <div className="bar" style={{ width: `${indeterminate ? 100 : Math.max(0, Math.min(100, pct ?? 0))}%` }} />
    </div>
  );
}

export function StatusPill({ status }: { status: TaskStatus }) {
  return (
    <span className={`pill ${status}`} data-status={status}>
      {status === 'cancelling' ? 'stopping…' : status}
    </span>
  );
}
