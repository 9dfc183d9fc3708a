// --help texts of the client commands. Kept apart from the commands so `leash help`
// can print them without loading the client, React or Ink.

import { CONNECTION_HELP, EXIT_HELP } from './common.ts';

export const CHAT_USAGE = `Usage: leash chat [--thread ID] [--model MODEL] [--server URL] [--api-key KEY]

A conversation with a leash server in your terminal; answers stream as they are written.
The history of the thread is shown first, cut-short answers marked [cut short].

Keys:
  Enter      send the line; while an answer streams, send it and interrupt that answer
             (it ends "cancelled", reason interrupted, and stays in the thread as written)
  Esc        stop the answer now: its task on the server ends "cancelled", and the partial
             answer stays, marked [cut short: stopped]
  Ctrl+C     stop the answer, or clear the line; twice within 2 s quits
  Ctrl+D     quit, on an empty line (an answer still streaming is cancelled)

Options:
  --thread ID    continue that thread (default: a new one, created with your first message)
  --model M      model for the answers, e.g. openai:gpt-4o-mini, simulated?tps=20 (default: the server's)
  -h, --help     show this help

${CONNECTION_HELP}

The status line shows the model, the thread and its token counts (input / output, as the
server counted them; "+N" while an answer streams). Quit and resume later with --thread.
Needs a terminal; for scripts use the HTTP API or the client SDK.

${EXIT_HELP}

Examples:
  leash chat
  leash chat --thread thread_5mn2kq8c1xw7a3bz9d0e --model openai:gpt-4o-mini
  LEASH_URL=https://leash.example.com LEASH_API_KEY=… leash chat`;

export const TASKS_USAGE = `Usage: leash tasks [list] [--status S,…] [--type T] [--thread ID] [--limit N] [--json]
       leash tasks show ID [--json]
       leash tasks watch ID [--cancel-on-exit] [--json]
       leash tasks cancel ID… [--no-wait] [--json]
       leash tasks cancel --all [--type T] [--older-than D] [--status S,…] [--no-wait] [--json]

Lists, follows and stops your tasks on a leash server.

  list          (the default) a table of tasks, newest first: id, type, status, progress, age
  show ID       one task: status, progress, times, error and its output so far
  watch ID      a progress bar and the streamed output until the task ends (plain output when
                stdout is not a terminal). Ctrl+C stops watching and leaves the task running;
                with --cancel-on-exit it cancels the task and waits until it has stopped
                (a second Ctrl+C stops waiting). Exit 0 if it completed, 1 if it failed or
                was cancelled
  cancel ID…    cancel tasks and wait (up to 30 s) until they have stopped; --no-wait: only ask.
                Exit 1 if any was not found, had already completed or failed, or is still stopping
  cancel --all  cancel all your queued and running tasks, or only those matching --type,
                --older-than (created longer ago than D) and --status

Options:
  --status S,…       queued, running, cancelling, completed, failed, cancelled
  --type T           a task type, e.g. generate, analyze, chat
  --thread ID        only the tasks of that thread (list)
  --limit N          rows to list, 1–200 (default 20)
  --older-than D     a duration: 30s, 10m, 2h, 1d, 1h30m
  --cancel-on-exit   (watch) Ctrl+C cancels the task instead of leaving it running
  --no-wait          (cancel) do not wait for the tasks to stop
  --json             print JSON instead of text, one document: list → {data, next_cursor};
                     show, watch → the task; cancel ID → the task (several IDs: an array);
                     cancel --all → {cancelled, ids}
  -h, --help         show this help

${CONNECTION_HELP}

${EXIT_HELP}

Examples:
  leash tasks
  leash tasks --status running,queued --type analyze
  leash tasks watch task_8ih5snff7xkf6tw5jicl
  leash tasks cancel task_8ih5snff7xkf6tw5jicl
  leash tasks cancel --all --type generate --older-than 10m
  leash tasks --json | jq -r '.data[] | select(.status == "failed") | .id'`;

export const RUN_USAGE = `Usage: leash run TYPE [--input JSON | --input @FILE | --input @-] [--priority N]
                 [--deadline D] [--detach] [--json] [--server URL] [--api-key KEY]

Starts a task of type TYPE (generate, analyze, …) and follows it until it ends: in a terminal
a progress bar and the streamed output; otherwise the output text on stdout and how the task
ended on stderr. Ctrl+C cancels the task on the server (not only this command) and waits
until it has stopped, then exits 1; a second Ctrl+C stops waiting (exit 130).

Options:
  --input JSON    the task's input as JSON; @FILE reads it from a file, @- from stdin (default {})
  --priority N    -100…100, higher runs first (default 0)
  --deadline D    the server cancels the task after D (reason deadline), e.g. 30s, 10m
  --detach        print the new task's id and exit at once (follow it with leash tasks watch)
  --json          print the final task as JSON when it ends (with --detach: the new task)
  -h, --help      show this help

${CONNECTION_HELP}

${EXIT_HELP}

Examples:
  leash run generate --input '{"prompt": "A haiku about leashes"}'
  leash run analyze --input @report.json
  leash run generate --input '{"prompt": "hi", "max_tokens": 200}' --json | jq -r .output_text
  id=$(leash run generate --input @job.json --detach) && leash tasks watch "$id"`;
