// Tasks: a live list (polled every second while the page is visible) with status,
// progress and the latest progress message, cancel per task or in a batch, the
// analyze form, and the selected task's event log.

import { useCallback, useEffect, useRef, useState } from 'react';
import { ConflictError, type Task, type TaskStatus } from '../../../src/client/index.ts';
import { useApi } from '../api.tsx';
import { navigate } from '../router.ts';
import { AnalyzeForm } from './AnalyzeForm.tsx';
import { ProgressBar, StatusPill } from './Progress.tsx';
import { TaskDetail } from './TaskDetail.tsx';
import { ACTIVE_STATUSES, isActive, shortId } from './util.ts';

const POLL_MS = 1000;
const FILTERS: Array<{ value: string; label: string; status?: TaskStatus[] }> = [
  { value: 'all', label: 'All' },
  { value: 'active', label: 'Active', status: ACTIVE_STATUSES },
  { value: 'completed', label: 'Completed', status: ['completed'] },
  { value: 'failed', label: 'Failed', status: ['failed'] },
  { value: 'cancelled', label: 'Cancelled', status: ['cancelled'] },
];

function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return new Date(iso).toLocaleDateString();
}

export function TasksView({ taskId }: { taskId: string | null }) {
  const { client, version, describe } = useApi();
  const [filter, setFilter] = useState('all');
  const [tasks, setTasks] = useState<Task[] | null>(null);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [confirmAll, setConfirmAll] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [stopping, setStopping] = useState<Set<string>>(new Set());
  const seq = useRef(0);

  const show = useCallback(
    (err: unknown) => {
      const m = describe(err);
      if (m !== null) setError(m);
    },
    [describe],
  );

  const refresh = useCallback(async () => {
    const n = ++seq.current;
    const status = FILTERS.find((f) => f.value === filter)?.status;
    try {
      const page = await client.tasks.list({ limit: 100, ...(status && { status }) });
      if (n === seq.current) {
        setTasks(page.data);
        setError(null);
      }
    } catch (err) {
      if (n === seq.current) show(err);
    }
  }, [client, filter, show]);

  useEffect(() => {
    void refresh();
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') void refresh();
    }, POLL_MS);
    return () => clearInterval(timer);
  }, [refresh, version]);

  async function cancelOne(id: string): Promise<void> {
    setStopping((s) => new Set(s).add(id));
    try {
      await client.tasks.cancel(id, { reason: 'user' });
    } catch (err) {
      if (!(err instanceof ConflictError && err.code === 'task_ended')) show(err);
    }
    void refresh();
  }

  async function cancelSelected(): Promise<void> {
    const ids = [...selected];
    setSelected(new Set());
    await Promise.all(ids.map((id) => cancelOne(id)));
    setMessage(`Asked ${ids.length} task${ids.length === 1 ? '' : 's'} to stop.`);
  }

  async function cancelAllActive(): Promise<void> {
    setConfirmAll(false);
    try {
      const r = await client.tasks.cancelMany({ status: ['queued', 'running'], reason: 'batch' });
      setStopping((s) => new Set([...s, ...r.ids]));
      setMessage(`Asked ${r.cancelled} task${r.cancelled === 1 ? '' : 's'} to stop.`);
    } catch (err) {
      show(err);
    }
    void refresh();
  }

  const list = tasks ?? [];
  const activeCount = list.filter((t) => isActive(t.status)).length;

  return (
    <div className={`tasks${taskId ? ' has-detail' : ''}`}>
      <div className="tasks-main">
        <AnalyzeForm
          onStarted={(t) => {
            void refresh();
            navigate({ view: 'tasks', taskId: t.id });
          }}
        />

        <section className="card task-list" aria-labelledby="tasks-heading">
          <div className="list-bar">
            <h2 id="tasks-heading">Tasks</h2>
            <label>
              <span className="sr-only">Show</span>
              <select aria-label="Show" value={filter} onChange={(e) => setFilter(e.target.value)}>
                {FILTERS.map((f) => (
                  <option key={f.value} value={f.value}>
                    {f.label}
                  </option>
                ))}
              </select>
            </label>
            <span className="spacer" />
            {selected.size > 0 && (
              <button type="button" className="stop" onClick={() => void cancelSelected()}>
                Cancel selected ({selected.size})
              </button>
            )}
            {confirmAll ? (
              <span className="confirm">
                Stop every active task?{' '}
                <button type="button" className="stop" onClick={() => void cancelAllActive()}>
                  Yes, cancel all
                </button>{' '}
                <button type="button" className="ghost" onClick={() => setConfirmAll(false)}>
                  No
                </button>
              </span>
            ) : (
              <button type="button" className="ghost" disabled={activeCount === 0} onClick={() => setConfirmAll(true)}>
                Cancel all active
              </button>
            )}
          </div>
          {message && (
            <p className="alert" role="status">
              {message}
              <button type="button" className="icon" aria-label="Dismiss" onClick={() => setMessage(null)}>
                ×
              </button>
            </p>
          )}
          {error && (
            <p className="alert error" role="alert">
              {error}
            </p>
          )}
          {tasks === null ? (
            <p className="muted">Loading…</p>
          ) : list.length === 0 ? (
            <p className="muted">No tasks here yet. Start an analysis above, or chat.</p>
          ) : (
            <ul className="rows">
              {list.map((t) => {
                const active = isActive(t.status);
                const asked = stopping.has(t.id) && active;
                const status: TaskStatus = asked && t.status !== 'cancelling' ? 'cancelling' : t.status;
                return (
                  <li
                    key={t.id}
                    className={`task-row${t.id === taskId ? ' current' : ''}`}
                    data-task-id={t.id}
                    data-status={t.status}
                  >
                    <input
                      type="checkbox"
                      aria-label={`Select ${t.type} ${shortId(t.id)}`}
                      disabled={!active}
                      checked={selected.has(t.id)}
                      onChange={(e) =>
                        setSelected((s) => {
                          const n = new Set(s);
                          if (e.target.checked) n.add(t.id);
                          else n.delete(t.id);
                          return n;
                        })
                      }
                    />
                    <a
                      className="task-link"
                      href={`/tasks/${t.id}`}
                      onClick={(e) => {
                        e.preventDefault();
                        navigate({ view: 'tasks', taskId: t.id });
                      }}
                    >
                      <span className="task-type">{t.type}</span> <span className="mono muted">{shortId(t.id)}</span>
                    </a>
                    <StatusPill status={status} />
                    <div className="task-progress">
                      <ProgressBar
                        value={t.progress}
                        status={t.status}
                        label={`Progress of ${t.type} ${shortId(t.id)}`}
                      />
                      <span className="small muted progress-message">
                        {t.error ? t.error.message : (t.progress_message ?? '')}
                        {t.cancel && t.status !== 'completed' ? ` · stop: ${t.cancel.reason}` : ''}
                      </span>
                    </div>
                    <span className="small muted when">{ago(t.created_at)}</span>
                    <span className="row-actions">
                      {active && (
                        <button
                          type="button"
                          className="stop small-button"
                          disabled={status === 'cancelling'}
                          onClick={() => void cancelOne(t.id)}
                          aria-label={`Cancel ${t.type} ${shortId(t.id)}`}
                        >
                          {status === 'cancelling' ? 'Stopping…' : 'Cancel'}
                        </button>
                      )}
                    </span>
                  </li>
                );
              })}
            </ul>
          )}
        </section>
      </div>

      {taskId && (
        <TaskDetail
          key={taskId}
          taskId={taskId}
          onClose={() => navigate({ view: 'tasks', taskId: null })}
          onCancel={() => void cancelOne(taskId)}
        />
      )}
    </div>
  );
}
