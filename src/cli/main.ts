// `leash <command>`: a table of commands, each `(argv) => exit code`. Usage
// mistakes exit 2 with one sentence and the usage; other failures exit 1.

// Commands are imported when run: the client commands must not pay for loading
// the server (and `serve` not for React and Ink).

interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
  help(): Promise<string>;
}

export const COMMANDS: Record<string, Command> = {
  serve: {
    summary: 'run the HTTP server',
    run: async (argv) => (await import('./serve.ts')).runServe(argv),
    help: async () => (await import('./serve-usage.ts')).SERVE_USAGE,
  },
  chat: {
    summary: 'chat in the terminal (Esc stops an answer)',
    run: async (argv) => (await import('./chat.ts')).runChat(argv),
    help: async () => (await import('./help.ts')).CHAT_USAGE,
  },
  tasks: {
    summary: 'list, watch and cancel tasks',
    run: async (argv) => (await import('./tasks.ts')).runTasks(argv),
    help: async () => (await import('./help.ts')).TASKS_USAGE,
  },
  run: {
    summary: 'start a task and follow it (Ctrl+C cancels it)',
    run: async (argv) => (await import('./run.ts')).runRun(argv),
    help: async () => (await import('./help.ts')).RUN_USAGE,
  },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length), 4);
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'Usage: leash <command> [options]',
    '',
    'Commands:',
    ...lines,
    `  ${'help'.padEnd(width)}  show this help, or a command's: leash help <command>`,
    '',
    'Client commands talk to --server URL (env LEASH_URL, default http://127.0.0.1:8080)',
    'with --api-key KEY (env LEASH_API_KEY).',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const topic = cmd === 'help' ? rest[0] : undefined;
    if (topic !== undefined && Object.hasOwn(COMMANDS, topic)) {
      process.stdout.write((await (COMMANDS[topic] as Command).help()) + '\n');
      return 0;
    }
    if (topic !== undefined) {
      process.stderr.write(`leash: unknown command "${topic}".\n\n${usage()}\n`);
      return 2;
    }
    // No command at all is a usage error; asking for help is not.
    (cmd === undefined ? process.stderr : process.stdout).write(usage() + '\n');
    return cmd === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (command === undefined) {
    process.stderr.write(`leash: unknown command "${cmd}".\n\n${usage()}\n`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    const code = (err as { exitCode?: unknown }).exitCode;
    if (typeof code === 'number') {
      process.stderr.write(`leash ${cmd}: ${(err as Error).message}\n`);
      return code;
    }
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      process.stderr.write(`leash ${cmd}: cannot listen: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`leash ${cmd}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}

// Run when executed directly (`node src/cli/main.ts …`, i.e. `npm start`); bin/leash.js calls main() itself.
// Exit explicitly: a stopped server must not linger on a forgotten handle.
if (import.meta.main) process.exit(await main(process.argv.slice(2)));
