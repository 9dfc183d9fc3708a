// `leash <command>`: a table of commands, each `(argv) => exit code`. Usage
// mistakes exit 2 with one sentence and the usage; other failures exit 1.

import { runServe, SERVE_USAGE } from './serve.ts';

interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

export const COMMANDS: Record<string, Command> = {
  serve: { summary: 'run the HTTP server', run: (argv) => runServe(argv) },
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
  ].join('\n');
}

const HELP: Record<string, string> = { serve: SERVE_USAGE };

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const topic = cmd === 'help' ? rest[0] : undefined;
    if (topic !== undefined && HELP[topic] !== undefined) {
      process.stdout.write(HELP[topic] + '\n');
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
