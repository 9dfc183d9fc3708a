// The environment an isolated handler sees. The server's environment holds its
// secrets (LEASH_API_KEYS, the database URL, provider keys); a handler and every
// library it loads could log it, send it in telemetry or hand it to a subprocess.
// So isolated handlers get an allowlist, not the parent's environment minus a
// denylist: a secret nobody thought of stays out by default.
//
//   - by default: what a program needs to run (PATH, HOME, locale, time zone, temp
//     directory, NODE_*) and leash's own non-secret knobs — minus any name that
//     looks like a secret, even among those (NODE_AUTH_TOKEN);
//   - plus exactly the names the task type lists in `env` (e.g. ['OPENAI_API_KEY']
//     for a handler that calls OpenAI itself), passed through as they are.
//
// This keeps secrets out of `process.env`; it is not a sandbox. Code running as the
// server's OS user can still read /proc/<server pid>/environ (and a worker thread
// shares the server's process): isolate hostile code with a separate user or
// container, and prefer LEASH_API_KEYS_FILE to keys in the environment.

const DEFAULT_NAMES = new Set([
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
  'TMP',
  'TEMP',
  'TERM',
  // Read by the handler side of isolation and the simulated model.
  'LEASH_LOG_LEVEL',
  'LEASH_SIM_TPS',
]);
const DEFAULT_PREFIXES = ['LC_', 'NODE_'];
/** Never passed by default, whatever the name's prefix. */
const SECRET_LOOKING = /KEY|TOKEN|SECRET|PASS|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT_KEY/i;

/**
 * What `ctx.models` reads to reach the model providers (src/models/providers.ts):
 * `env: MODEL_ENV` for a type whose isolated handler calls models. The built-in
 * model-calling types list it, so they keep working when an operator isolates them.
 */
export const MODEL_ENV: readonly string[] = [
  'OPENAI_BASE_URL',
  'OPENAI_API_KEY',
  'OLLAMA_HOST',
  'ANTHROPIC_BASE_URL',
  'ANTHROPIC_API_KEY',
  'LEASH_GGUF_GPU',
];

/** A valid `env` entry of a task definition. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

function passesByDefault(name: string): boolean {
  if (SECRET_LOOKING.test(name)) return false;
  return DEFAULT_NAMES.has(name) || DEFAULT_PREFIXES.some((p) => name.startsWith(p));
}

/** The environment of an isolated handler: the default allowlist plus the names its type asked for. */
export function isolatedEnv(parent: NodeJS.ProcessEnv, asked: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value !== undefined && passesByDefault(name)) out[name] = value;
  }
  for (const name of asked) {
    const value = parent[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
