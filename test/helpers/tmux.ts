// A program in a real pseudo-terminal, driven like a person would: tmux runs it,
// `send-keys` types, `capture-pane` reads the screen. Each session gets its own
// tmux server (-L socket, no config), so the test's environment is the program's
// and nothing is shared with a tmux the developer may be running.

import { execFile, execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export function tmuxAvailable(): boolean {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Quotes one word for sh. */
export const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

let counter = 0;

export interface TmuxOptions {
  cols?: number;
  rows?: number;
  env?: NodeJS.ProcessEnv;
}

export class TmuxSession {
  readonly socket: string;
  readonly #env: NodeJS.ProcessEnv;

  private constructor(socket: string, env: NodeJS.ProcessEnv) {
    this.socket = socket;
    this.#env = env;
  }

  /**
   * Starts `argv` (quoted for sh) in a detached session. When it exits, the pane
   * shows `[exit N]` and stays open, so the exit code can be read off the screen.
   */
  static async start(argv: string[], opts: TmuxOptions = {}): Promise<TmuxSession> {
    const socket = `leash-test-${process.pid}-${++counter}`;
    const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
    delete env.TMUX; // we may be running inside someone's tmux
    const cmd = `${argv.map(shQuote).join(' ')}; echo "[exit $?]"; sleep 600`;
    const s = new TmuxSession(socket, env);
    await s.#tmux(
      'new-session',
      '-d',
      '-s',
      'main',
      '-x',
      String(opts.cols ?? 120),
      '-y',
      String(opts.rows ?? 40),
      cmd,
    );
    return s;
  }

  async #tmux(...args: string[]): Promise<string> {
    const { stdout } = await run('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], { env: this.#env });
    return stdout;
  }

  /** Keys by tmux name: `Escape`, `Enter`, `C-c`, … */
  async keys(...keys: string[]): Promise<void> {
    await this.#tmux('send-keys', '-t', 'main', ...keys);
  }

  /** Literal text, as typed. */
  async type(text: string): Promise<void> {
    await this.#tmux('send-keys', '-t', 'main', '-l', text);
  }

  /** The visible screen, one string per row, trailing blanks trimmed. */
  async screen(): Promise<string> {
    return (await this.#tmux('capture-pane', '-p', '-t', 'main'))
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n');
  }

  /** Polls the screen until `test` passes; throws with the last screen otherwise. */
  async waitFor(test: RegExp | ((screen: string) => boolean), timeoutMs = 15_000): Promise<string> {
    const ok = typeof test === 'function' ? test : (s: string) => test.test(s);
    const end = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      last = await this.screen();
      if (ok(last)) return last;
      if (Date.now() > end) throw new Error(`screen did not show ${String(test)} within ${timeoutMs} ms:\n${last}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The program's exit code once it has exited (see start()). */
  async exitCode(timeoutMs = 15_000): Promise<number> {
    const screen = await this.waitFor(/\[exit \d+\]/, timeoutMs);
    return Number(/\[exit (\d+)\]/.exec(screen)?.[1]);
  }

  /** Ends the program, the tmux server and removes its socket file (tmux leaves it behind). */
  async kill(): Promise<void> {
    const path = (await this.#tmux('display-message', '-p', '-t', 'main', '#{socket_path}').catch(() => '')).trim();
    await this.#tmux('kill-server').catch(() => {});
    if (path !== '') await rm(path, { force: true }).catch(() => {});
  }
}
