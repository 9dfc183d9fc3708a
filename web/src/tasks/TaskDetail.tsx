// One task: its state, its streamed output and its event log, followed live from
// seq 0 (the client resumes by itself if the connection drops).

import { useEffect, useRef, useState } from 'react';
import type { Task, TaskDetail as TaskInfo, TaskStreamEvent, WorkerInfo } from '../../../src/client/index.ts';
import { useApi } from '../api.tsx';
import { ProgressBar, StatusPill } from './Progress.tsx';
import { isActive, shortId } from './util.ts';

/** Rows of the log kept on screen; older ones are counted, not rendered. */
const MAX_LOG_ROWS = 400;

function summary(e: TaskStreamEvent): string {
  switch (e.type) {
    case 'output.delta':
      return JSON.stringify(e.data.text);
    case 'task.progress':
      return `${e.data.progress ?? '–'}%${e.data.message ? ` · ${e.data.message}` : ''}`;
    case 'task.cancelling':
      return `reason: ${e.data.reason}`;
    case 'task.cancelled':
      return `reason: ${e.data.reason} · kept ${e.data.output_text.length} characters`;
    case 'task.failed':
      return `${e.data.error.code}: ${e.data.error.message}`;
    case 'task.completed':
      return 'result ready';
    default:
      return '';
  }
}

export function TaskDetail(props: { taskId: string; onClose(): void; onCancel(): void }) {
  const { taskId } = props;
  const { client, version, describe } = useApi();
  const [task, setTask] = useState<TaskInfo | null>(null);
  const [events, setEvents] = useState<TaskStreamEvent[]>([]);
  // Events received in all (seqs skip after a crash, so the last seq does not count them).
  const [received, setReceived] = useState(0);
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const log = useRef<HTMLDivElement>(null);
  const stick = useRef(true);

  useEffect(() => {
    const ac = new AbortController();
    setEvents([]);
    setReceived(0);
    setText('');
    setError(null);
    void (async () => {
      try {
        setTask(await client.tasks.get(taskId, { signal: ac.signal }));
        let last = 0;
        for await (const e of client.tasks.events(taskId, { after: 0, signal: ac.signal })) {
          if (e.seq <= last) continue;
          last = e.seq;
          setEvents((es) => (es.length >= MAX_LOG_ROWS * 2 ? [...es.slice(-MAX_LOG_ROWS), e] : [...es, e]));
          setReceived((n) => n + 1);
          if (e.type === 'output.delta') setText((t) => t + e.data.text);
          if (e.type === 'task.cancelled') setText(e.data.output_text);
          setTask((t) => (t ? patch(t, e) : t));
        }
        // Final state (result, timestamps) once the log has ended.
        setTask(await client.tasks.get(taskId, { signal: ac.signal }));
      } catch (err) {
        if (ac.signal.aborted) return;
        const m = describe(err);
        if (m !== null) setError(m);
      }
    })();
    return () => ac.abort();
  }, [client, taskId, version, describe]);

  // Follow the newest event unless the reader scrolled up.
  useEffect(() => {
    const el = log.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [events]);

  const shown = events.slice(-MAX_LOG_ROWS);
  const hidden = received - shown.length;

  return (
    <section className="card task-detail" aria-labelledby="detail-heading">
      <div className="list-bar">
        <h2 id="detail-heading">
          {task?.type ?? 'Task'} <span className="mono muted">{shortId(taskId)}</span>
        </h2>
        {task && <StatusPill status={task.status} />}
        <span className="spacer" />
        {task && isActive(task.status) && (
          <button type="button" className="stop" onClick={props.onCancel} disabled={task.status === 'cancelling'}>
            {task.status === 'cancelling' ? 'Stopping…' : 'Cancel'}
          </button>
        )}
        <button type="button" className="ghost" onClick={props.onClose} aria-label="Close task">
          Close
        </button>
      </div>
      {error && (
        <p className="alert error" role="alert">
          {error}
        </p>
      )}
      {task && (
        <>
          <ProgressBar value={task.progress} status={task.status} label="Task progress" />
          <RunsOn taskId={taskId} active={task.status === 'running' || task.status === 'cancelling'} />
          <p className="small muted">
            {task.progress_message ?? ''}
            {task.cancel ? ` · stop asked: ${task.cancel.reason}` : ''}
            {task.error ? ` · ${task.error.code}: ${task.error.message}` : ''}
          </p>
        </>
      )}
      <h3>Output</h3>
      <pre className="output" aria-label="Task output">
        {text || <span className="muted">(nothing yet)</span>}
      </pre>
      {task?.status === 'completed' && task.result !== null && task.result !== undefined && (
        <details>
          <summary>Result</summary>
          <pre className="output">{JSON.stringify(task.result, null, 2)}</pre>
        </details>
      )}
      <h3>Event log</h3>
      <div
        className="log"
        role="log"
        aria-label="Event log"
        ref={log}
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {hidden > 0 && <div className="muted small">{hidden} earlier events not shown</div>}
        <table>
          <tbody>
            {shown.map((e) => (
              <tr key={e.seq} data-type={e.type}>
                <td className="mono muted">{e.seq}</td>
                <td className="mono">{e.type}</td>
                <td className="small">{summary(e)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** The task as the events say it is now (the list's poll catches up on the rest). */
function patch(t: TaskInfo, e: TaskStreamEvent): TaskInfo {
  const base: Task = t;
  switch (e.type) {
    case 'task.started':
      return { ...base, status: 'running' };
    case 'task.progress':
      return { ...base, progress: e.data.progress, progress_message: e.data.message };
    case 'task.cancelling':
      return { ...base, status: 'cancelling' };
    case 'task.completed':
      return { ...base, status: 'completed', progress: 100, result: e.data.result };
    case 'task.failed':
      return { ...base, status: 'failed', error: e.data.error };
    case 'task.cancelled':
      return { ...base, status: 'cancelled' };
    default:
      return t;
  }
}

/** Where an active task runs when a remote worker has it (GET /api/workers, polled while active). */
function RunsOn({ taskId, active }: { taskId: string; active: boolean }) {
  const { client } = useApi();
  const [worker, setWorker] = useState<WorkerInfo | null>(null);
  useEffect(() => {
    if (!active) {
      setWorker(null);
      return;
    }
    const ac = new AbortController();
    const look = (): void => {
      client
        .workers({ signal: ac.signal })
        .then((ws) => setWorker(ws.find((w) => w.running.some((r) => r.task_id === taskId)) ?? null))
        .catch(() => setWorker(null)); // an older server without /api/workers: nothing to show
    };
    look();
    const timer = setInterval(look, 2000);
    return () => {
      clearInterval(timer);
      ac.abort();
    };
  }, [client, taskId, active]);
  if (worker === null) return null;
  return (
    <p className="small runs-on" data-worker-id={worker.id}>
      Runs on remote worker <code>{worker.id}</code>
      {worker.sdk ? ` (${worker.sdk})` : ''}, {worker.running.length} of {worker.slots} slots busy
    </p>
  );
}
