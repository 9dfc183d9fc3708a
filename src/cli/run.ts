// `leash run TYPE --input JSON|@file|@-`: starts a task and follows it to its end.

import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { parseArgs } from 'node:util';
import { CONNECTION_OPTIONS, EXIT, connect, explain, parseFailure, processIo, usage, withErrors } from './common.ts';
import type { Io } from './common.ts';
import { ConflictError } from '../client/index.ts';
import { followTask, outputMode } from './follow.ts';
import { parseDuration } from './format.ts';
import { RUN_USAGE } from './help.ts';

/** `--input`: inline JSON, `@path` for a file, `@-` for stdin. */
export async function readInput(raw: string | undefined, io: Io): Promise<unknown> {
  if (raw === undefined) return {};
  let source = 'the --input value';
  let json = raw;
  if (raw.startsWith('@')) {
    const path = raw.slice(1);
    if (path === '') throw usage('Invalid --input "@": name a file after the @, or use @- for stdin.');
    source = path === '-' ? 'stdin' : path;
    try {
      json = path === '-' ? await text(io.stdin) : await readFile(path, 'utf8');
    } catch (err) {
      throw usage(`Cannot read --input file ${path}: ${(err as Error).message}`);
    }
  }
  try {
    return JSON.parse(json) as unknown;
  } catch (err) {
    throw usage(`Invalid JSON in ${source}: ${(err as Error).message}`);
  }
}

export async function runRun(argv: string[], io: Io = processIo()): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        ...CONNECTION_OPTIONS,
        input: { type: 'string', short: 'i' },
        priority: { type: 'string' },
        deadline: { type: 'string' },
        detach: { type: 'boolean' },
        json: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw parseFailure(err, RUN_USAGE);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout.write(RUN_USAGE + '\n');
    return EXIT.ok;
  }
  const [type, ...extra] = positionals;
  if (type === undefined) throw usage(`Missing the task type: leash run TYPE --input JSON.\n\n${RUN_USAGE}`);
  if (extra.length > 0) throw usage(`Unexpected argument "${extra[0]}" (put the input in --input '<json>').`);
  let priority: number | undefined;
  if (values.priority !== undefined) {
    if (!/^-?\d{1,3}$/.test(values.priority)) throw usage(`Invalid --priority "${values.priority}": an integer.`);
    priority = Number(values.priority);
  }
  const deadlineMs =
    values.deadline === undefined ? undefined : Math.ceil(parseDuration(values.deadline, '--deadline'));
  const input = await readInput(values.input, io);
  const conn = connect(values, io.env);
  const json = values.json === true;

  // Ctrl+C while the task is being created: the server may already have it, and
  // exiting now would leave it running unseen. Let the create answer, then cancel it
  // (below); a second Ctrl+C gives up waiting for the answer.
  const giveUp = new AbortController();
  let interrupted = false;
  const onSigint = (): void => {
    if (interrupted) return giveUp.abort();
    interrupted = true;
    io.stderr.write('Cancelling as soon as the server has the task… (Ctrl+C again to stop waiting)\n');
  };
  io.signals.on('SIGINT', onSigint);
  let task;
  try {
    task = await withErrors(conn, () =>
      conn.client.tasks.create(
        {
          type,
          input,
          ...(priority !== undefined && { priority }),
          ...(deadlineMs !== undefined && { deadline_ms: deadlineMs }),
        },
        { signal: giveUp.signal },
      ),
    );
  } catch (err) {
    if (giveUp.signal.aborted) {
      io.stderr.write('Stopped waiting; the task may have been created (check with: leash tasks list).\n');
      return EXIT.interrupted;
    }
    throw err;
  } finally {
    io.signals.off('SIGINT', onSigint);
  }
  if (interrupted) {
    io.stderr.write(`Started ${task.id} (${task.type}); cancelling it.\n`);
    await conn.client.tasks.cancel(task.id, { reason: 'user' }).catch((err: unknown) => {
      if (!(err instanceof ConflictError)) throw explain(err, conn); // a conflict: it ended meanwhile
    });
    // Follow it to its (cancelled) end, as a Ctrl+C while following does.
    return followTask({ conn, io, task, mode: outputMode(io, json), onInterrupt: 'detach' });
  }
  if (values.detach === true) {
    io.stdout.write(json ? JSON.stringify(task, null, 2) + '\n' : task.id + '\n');
    return EXIT.ok;
  }
  const mode = outputMode(io, json);
  if (mode === 'plain') io.stderr.write(`Started ${task.id} (${task.type}); Ctrl+C cancels it.\n`);
  return followTask({ conn, io, task, mode, onInterrupt: 'cancel' });
}
