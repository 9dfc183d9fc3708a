// Following one task to its end, for `leash run` and `leash tasks watch`, in one
// of three outputs:
//   tty    Ink: output rows, a progress bar and the status (stdout is a terminal)
//   plain  output text to stdout as it streams, the ending to stderr (pipes, files)
//   json   nothing until the end, then the final task as one JSON document
// Ctrl+C (SIGINT): with `onInterrupt: 'cancel'` the first one cancels the task on
// the server and keeps following until it has stopped; a second one (or the first,
// with 'detach') stops following and leaves the task to the server: exit 130.

import { ConflictError } from '../client/index.ts';
import type { Task, TaskStreamEvent } from '../client/index.ts';
import { EXIT, explain } from './common.ts';
import type { Connection, Io } from './common.ts';
import { describeEnd } from './format.ts';

export type OutputMode = 'tty' | 'plain' | 'json';

export interface FollowOptions {
  conn: Connection;
  io: Io;
  task: Task;
  mode: OutputMode;
  onInterrupt: 'cancel' | 'detach';
}

/** What the follower tells an output about. */
interface Sink {
  event(ev: TaskStreamEvent): void;
  notice(text: string | null): void;
  /** The task has ended; resolves once everything is written. */
  end(task: Task): Promise<void>;
  /** Following stopped before the end (Ctrl+C); `why` is one sentence for stderr. */
  detach(why: string): Promise<void>;
}

export function outputMode(io: Io, json: boolean): OutputMode {
  if (json) return 'json';
  return io.stdout.isTTY === true ? 'tty' : 'plain';
}

/** Follows the task to its end. Exit code: 0 completed, 1 failed or cancelled, 130 stopped following. */
export async function followTask(o: FollowOptions): Promise<number> {
  const { conn, io, task } = o;
  const { client } = conn;
  const hint =
    o.onInterrupt === 'cancel' ? 'Ctrl+C cancels the task.' : 'Ctrl+C stops watching (the task keeps running).';
  const sink = await makeSink(o, hint);
  const stop = new AbortController();
  let interrupts = 0;
  let detachWhy = '';
  const onSigint = (): void => {
    interrupts++;
    if (interrupts === 1 && o.onInterrupt === 'cancel') {
      sink.notice(`Cancelling ${task.id}… (Ctrl+C again to stop waiting)`);
      client.tasks.cancel(task.id, { reason: 'user' }).catch((err: unknown) => {
        // Ended meanwhile: its terminal event is on its way, nothing to say.
        if (err instanceof ConflictError) return;
        sink.notice(`Could not cancel ${task.id}: ${(explain(err, conn) as Error).message}`);
      });
      return;
    }
    detachWhy =
      o.onInterrupt === 'cancel'
        ? `Stopped waiting; ${task.id} was asked to cancel (check it with: leash tasks show ${task.id}).`
        : `Stopped watching; ${task.id} keeps running (cancel it with: leash tasks cancel ${task.id}).`;
    stop.abort();
  };
  io.signals.on('SIGINT', onSigint);
  try {
    try {
      for await (const ev of client.tasks.events(task.id, { signal: stop.signal })) sink.event(ev);
    } catch (err) {
      if (!stop.signal.aborted) throw err;
    }
    if (stop.signal.aborted) {
      await sink.detach(detachWhy);
      return EXIT.interrupted;
    }
    const final = await client.tasks.get(task.id);
    await sink.end(final);
    return final.status === 'completed' ? EXIT.ok : EXIT.failed;
  } catch (err) {
    await sink.detach('').catch(() => {});
    throw explain(err, conn);
  } finally {
    io.signals.off('SIGINT', onSigint);
  }
}

async function makeSink(o: FollowOptions, hint: string): Promise<Sink> {
  if (o.mode === 'json') return jsonSink(o.io);
  if (o.mode === 'plain') return plainSink(o.io);
  return inkSink(o, hint);
}

function jsonSink(io: Io): Sink {
  return {
    event() {},
    notice() {},
    async end(task) {
      io.stdout.write(JSON.stringify(task, null, 2) + '\n');
    },
    async detach(why) {
      if (why) io.stderr.write(why + '\n');
    },
  };
}

/** A result worth printing when the task streamed no text (e.g. a structured result). */
function resultText(task: Task): string | null {
  if (task.output_text !== '' || task.result === null || task.result === undefined) return null;
  return JSON.stringify(task.result, null, 2) + '\n';
}

function plainSink(io: Io): Sink {
  let wrote = false;
  let endsWithNewline = true;
  const closeLine = (): void => {
    if (wrote && !endsWithNewline) io.stdout.write('\n');
    endsWithNewline = true;
  };
  return {
    event(ev) {
      if (ev.type !== 'output.delta' || ev.data.text === '') return;
      io.stdout.write(ev.data.text);
      wrote = true;
      endsWithNewline = ev.data.text.endsWith('\n');
    },
    notice(text) {
      if (text !== null) io.stderr.write(text + '\n');
    },
    async end(task) {
      closeLine();
      const r = resultText(task);
      if (r !== null) io.stdout.write(r);
      io.stderr.write(`${task.id} ${describeEnd(task)}\n`);
    },
    async detach(why) {
      closeLine();
      if (why) io.stderr.write(why + '\n');
    },
  };
}

async function inkSink(o: FollowOptions, hint: string): Promise<Sink> {
  const { io } = o;
  // Loaded only here: React and Ink cost a few hundred ms that plain output doesn't need.
  const [{ default: React }, { render }, { TaskView }, { TaskViewModel }] = await Promise.all([
    import('react'),
    import('ink'),
    import('./ui/task-view.ts'),
    import('./task-model.ts'),
  ]);
  const model = new TaskViewModel(o.task, (io.stdout.columns ?? 80) - 1, hint);
  const app = render(React.createElement(TaskView, { model }), {
    stdout: io.stdout,
    stdin: io.stdin,
    stderr: io.stderr,
    exitOnCtrlC: false,
    patchConsole: false,
    // Explicit: Ink would fall back to printing only the last frame when CI is set.
    interactive: true,
  });
  const close = async (): Promise<void> => {
    // Let React commit the last state before the final frame is drawn.
    await new Promise((r) => setImmediate(r));
    await app.waitUntilRenderFlush();
    app.unmount();
    await app.waitUntilExit().catch(() => {});
  };
  return {
    event: (ev) => model.apply(ev),
    notice: (text) => model.notice(text),
    async end(task) {
      model.finish(task);
      await close();
      const r = resultText(task);
      if (r !== null) io.stdout.write(r);
    },
    async detach(why) {
      model.notice(null);
      await close();
      if (why) io.stderr.write(why + '\n');
    },
  };
}
