// `leash tasks [list|show|watch|cancel]`: the caller's tasks on a leash server.

import { parseArgs } from 'node:util';
import { ConflictError, NotFoundError, isTerminalStatus } from '../client/index.ts';
import type { Task, TaskStatus } from '../client/index.ts';
// The status names only (a constant list, no server code comes with it).
import { TASK_STATUSES } from '../core/types.ts';
import { CONNECTION_OPTIONS, EXIT, connect, explain, parseFailure, processIo, usage, withErrors } from './common.ts';
import type { Connection, Io } from './common.ts';
import { followTask, outputMode } from './follow.ts';
import { describeEnd, formatAge, formatProgress, parseDuration, progressBar, table, taskTable } from './format.ts';
import { TASKS_USAGE } from './help.ts';

/** How long `tasks cancel` waits for the tasks to stop before saying they are still stopping. */
export const CANCEL_WAIT_MS = 30_000;
/** Waits in flight at once for `cancel --all` (each is one long poll). */
const WAIT_CONCURRENCY = 8;

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  json: { type: 'boolean' },
  status: { type: 'string' },
  type: { type: 'string' },
  thread: { type: 'string' },
  limit: { type: 'string' },
  all: { type: 'boolean' },
  'older-than': { type: 'string' },
  'no-wait': { type: 'boolean' },
  'cancel-on-exit': { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

const SUBCOMMANDS = ['list', 'show', 'watch', 'cancel'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

/** Which flags each subcommand takes (beyond the connection ones and --json). */
const ALLOWED: Record<Sub, readonly string[]> = {
  list: ['status', 'type', 'thread', 'limit'],
  show: [],
  watch: ['cancel-on-exit'],
  cancel: ['all', 'type', 'older-than', 'status', 'no-wait'],
};

function parseStatuses(raw: string): TaskStatus[] {
  const out: TaskStatus[] = [];
  for (const s of raw.split(',').map((x) => x.trim())) {
    if (!(TASK_STATUSES as readonly string[]).includes(s)) {
      throw usage(`Invalid --status "${s}": use ${TASK_STATUSES.join(', ')}.`);
    }
    out.push(s as TaskStatus);
  }
  return out;
}

export async function runTasks(argv: string[], io: Io = processIo()): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    throw parseFailure(err, TASKS_USAGE);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout.write(TASKS_USAGE + '\n');
    return EXIT.ok;
  }
  const first = positionals[0];
  const sub: Sub =
    first === undefined ? 'list' : (((SUBCOMMANDS as readonly string[]).includes(first) ? first : '') as Sub);
  if (!SUBCOMMANDS.includes(sub)) {
    throw usage(`Unknown subcommand "${first}": use list, show, watch or cancel.\n\n${TASKS_USAGE}`);
  }
  const args = first === undefined ? [] : positionals.slice(1);
  for (const [name, v] of Object.entries(values)) {
    if (v === undefined || name in CONNECTION_OPTIONS || name === 'json') continue;
    if (!ALLOWED[sub].includes(name)) throw usage(`--${name} does not apply to \`leash tasks ${sub}\`.`);
  }
  const conn = connect(values, io.env);
  switch (sub) {
    case 'list':
      if (args.length > 0) throw usage(`Unexpected argument "${args[0]}" for \`leash tasks list\`.`);
      return list(conn, io, values);
    case 'show':
    case 'watch': {
      if (args.length !== 1) throw usage(`\`leash tasks ${sub}\` takes one task id.`);
      const id = args[0] as string;
      const task = await withErrors(conn, () => conn.client.tasks.get(id));
      if (sub === 'show') return show(io, task, values.json === true);
      return followTask({
        conn,
        io,
        task,
        mode: outputMode(io, values.json === true),
        onInterrupt: values['cancel-on-exit'] === true ? 'cancel' : 'detach',
      });
    }
    case 'cancel':
      return values.all === true ? cancelAll(conn, io, values, args) : cancelIds(conn, io, values, args);
  }
}

async function list(conn: Connection, io: Io, values: Values): Promise<number> {
  let limit = 20;
  if (values.limit !== undefined) {
    if (!/^\d{1,3}$/.test(values.limit) || Number(values.limit) < 1 || Number(values.limit) > 200) {
      throw usage(`Invalid --limit "${values.limit}": a number from 1 to 200.`);
    }
    limit = Number(values.limit);
  }
  const status = values.status === undefined ? undefined : parseStatuses(values.status);
  const page = await withErrors(conn, async () =>
    conn.client.tasks.list({
      limit,
      ...(status !== undefined && { status }),
      ...(values.type !== undefined && { type: values.type }),
      ...(values.thread !== undefined && { thread_id: values.thread }),
    }),
  );
  if (values.json === true) {
    io.stdout.write(JSON.stringify(page, null, 2) + '\n');
    return EXIT.ok;
  }
  if (page.data.length === 0) {
    io.stdout.write('No tasks.\n');
    return EXIT.ok;
  }
  io.stdout.write(taskTable(page.data) + '\n');
  if (page.next_cursor !== null) io.stdout.write(`(more: raise --limit, or filter with --status / --type)\n`);
  return EXIT.ok;
}

function show(io: Io, task: Task, json: boolean): number {
  if (json) {
    io.stdout.write(JSON.stringify(task, null, 2) + '\n');
    return EXIT.ok;
  }
  const at = (iso: string | null): string => (iso === null ? '-' : `${iso} (${formatAge(iso)} ago)`);
  const rows: string[][] = [
    ['id', task.id],
    ['type', task.type],
    ['status', isTerminalStatus(task.status) ? describeEnd(task) : task.status],
    [
      'progress',
      `${progressBar(task.progress, 24)} ${formatProgress(task)}${task.progress_message ? `  ${task.progress_message}` : ''}`,
    ],
    ['created', at(task.created_at)],
    ['started', at(task.started_at)],
    ['ended', at(task.ended_at)],
  ];
  if (task.thread_id !== null) rows.push(['thread', task.thread_id]);
  if (task.cancel !== null) rows.push(['cancel', `${task.cancel.reason}, asked at ${task.cancel.requested_at}`]);
  if (task.deadline_at !== null) rows.push(['deadline', task.deadline_at]);
  io.stdout.write(table(rows) + '\n');
  if (task.output_text !== '') io.stdout.write(`\n${task.output_text}${task.output_text.endsWith('\n') ? '' : '\n'}`);
  else if (task.result !== null && task.result !== undefined) {
    io.stdout.write(`\n${JSON.stringify(task.result, null, 2)}\n`);
  }
  return EXIT.ok;
}

/** Waits for each task to end (or CANCEL_WAIT_MS), a few at a time. */
async function waitAll(conn: Connection, ids: string[]): Promise<Map<string, Task>> {
  const out = new Map<string, Task>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++] as string;
      out.set(id, await conn.client.tasks.wait(id, { timeoutMs: CANCEL_WAIT_MS }));
    }
  };
  await Promise.all(Array.from({ length: Math.min(WAIT_CONCURRENCY, ids.length) }, worker));
  return out;
}

async function cancelIds(conn: Connection, io: Io, values: Values, ids: string[]): Promise<number> {
  if (ids.length === 0) {
    throw usage('Name the tasks to cancel (leash tasks cancel ID…), or use --all.');
  }
  for (const flag of ['type', 'older-than', 'status'] as const) {
    if (values[flag] !== undefined)
      throw usage(`--${flag} filters \`leash tasks cancel --all\`; it does not apply to ids.`);
  }
  const json = values.json === true;
  const wait = values['no-wait'] !== true;
  let code: number = EXIT.ok;
  const results: Task[] = [];
  for (const id of ids) {
    let task: Task;
    try {
      task = await conn.client.tasks.cancel(id, { reason: 'user' });
      if (wait && !isTerminalStatus(task.status))
        task = await conn.client.tasks.wait(id, { timeoutMs: CANCEL_WAIT_MS });
    } catch (err) {
      code = EXIT.failed;
      if (err instanceof NotFoundError) {
        io.stderr.write(`No task ${id} (or it is not yours).\n`);
        continue;
      }
      if (err instanceof ConflictError && err.code === 'task_ended') {
        const status = (err.details as { status?: unknown } | undefined)?.status;
        io.stderr.write(`${id} had already ${typeof status === 'string' ? status : 'ended'}; nothing to cancel.\n`);
        continue;
      }
      // Unreachable server or a refused key: stop here with its own exit code.
      throw explain(err, conn);
    }
    results.push(task);
    if (wait && !isTerminalStatus(task.status)) {
      code = EXIT.failed;
      io.stderr.write(`${id} is still ${task.status} after ${CANCEL_WAIT_MS / 1000} s.\n`);
    }
    if (!json) io.stdout.write(`${id} ${isTerminalStatus(task.status) ? describeEnd(task) : task.status}\n`);
  }
  if (json) io.stdout.write(JSON.stringify(ids.length === 1 ? (results[0] ?? null) : results, null, 2) + '\n');
  return code;
}

async function cancelAll(conn: Connection, io: Io, values: Values, ids: string[]): Promise<number> {
  if (ids.length > 0) throw usage('Use either task ids or --all, not both.');
  const status = values.status === undefined ? undefined : parseStatuses(values.status);
  const olderMs = values['older-than'] === undefined ? undefined : parseDuration(values['older-than'], '--older-than');
  const filter = {
    ...(status !== undefined && { status }),
    ...(values.type !== undefined && { type: values.type }),
    ...(olderMs !== undefined && { created_before: new Date(Date.now() - olderMs).toISOString() }),
  };
  const res = await withErrors(conn, () => conn.client.tasks.cancelMany(filter));
  const wait = values['no-wait'] !== true;
  const ended =
    wait && res.ids.length > 0 ? await withErrors(conn, () => waitAll(conn, res.ids)) : new Map<string, Task>();
  const stillStopping = [...ended.values()].filter((t) => !isTerminalStatus(t.status)).map((t) => t.id);
  if (values.json === true) {
    io.stdout.write(JSON.stringify(res, null, 2) + '\n');
  } else if (res.cancelled === 0) {
    io.stdout.write('No active task matched; nothing to cancel.\n');
  } else {
    const what = wait ? 'Cancelled' : 'Asked to cancel';
    io.stdout.write(`${what} ${res.cancelled} task${res.cancelled === 1 ? '' : 's'}: ${res.ids.join(', ')}\n`);
  }
  if (stillStopping.length > 0) {
    io.stderr.write(`Still stopping after ${CANCEL_WAIT_MS / 1000} s: ${stillStopping.join(', ')}\n`);
    return EXIT.failed;
  }
  return EXIT.ok;
}
