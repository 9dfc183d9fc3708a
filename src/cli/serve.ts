// `leash serve`: the flags and the environment → startServer (start-server.ts), the
// listening URL on stdout, and a graceful stop on SIGTERM/SIGINT (a second signal exits
// at once). The defaults and --help text are in serve-usage.ts, the environment readers
// in serve-env.ts.

import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { DEFAULT_MODEL_PATTERNS, parseModelPatterns } from '../models/allowlist.ts';
import { builtinTasks } from '../tasks/index.ts';
import { UsageError } from './usage-error.ts';
import { apiKeysFromEnv, securityFromEnv } from './security-env.ts';
import { loadTaskModules } from './task-modules.ts';
import { detectDefaultModel, SIMULATED_NOTE } from './default-model.ts';
import { startServer } from './start-server.ts';
import { DEFAULT_DB, DEFAULT_HOST, DEFAULT_PORT, SERVE_USAGE } from './serve-usage.ts';
import {
  checkModelsDir,
  checkThreadContextEnv,
  ggufLimitsOrUsageError,
  logLevelFromEnv,
  parsePort,
  rateLimitFromEnv,
  runtimeLimitsFromEnv,
} from './serve-env.ts';

// What embedding programs, benchmarks and tests import from here (the package entry, src/index.ts, too).
export { UsageError, SERVE_USAGE, runtimeLimitsFromEnv, rateLimitFromEnv };
export { isLoopbackHost, startServer, type RunningServer, type StartServerOptions } from './start-server.ts';

/** Runs `leash serve` until a signal; resolves with the process exit code. */
export async function runServe(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        db: { type: 'string' },
        model: { type: 'string' },
        tasks: { type: 'string', multiple: true },
        models: { type: 'string' },
        'models-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${SERVE_USAGE}`);
  }
  if (values.help === true) {
    process.stdout.write(SERVE_USAGE + '\n');
    return 0;
  }
  const level = logLevelFromEnv(env);
  checkThreadContextEnv(env);
  const apiKeys = apiKeysFromEnv(env);
  const security = securityFromEnv(env);
  const modulePaths =
    values.tasks ??
    (env.LEASH_TASKS ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '');
  const ownTasks = await loadTaskModules(modulePaths, new Map(builtinTasks.map((t) => [t.type, 'a built-in type'])));
  const host = values.host ?? (env.HOST?.trim() || DEFAULT_HOST);
  const portRaw = values.port ?? env.PORT?.trim();
  const port = portRaw === undefined || portRaw === '' ? DEFAULT_PORT : parsePort(portRaw);
  const gguf = ggufLimitsOrUsageError(env);
  const modelsDir = values['models-dir']?.trim() || gguf.modelsDir;
  checkModelsDir(modelsDir);
  const allowModels = parseModelPatterns(values.models ?? env.LEASH_MODELS);
  // Logs on stderr keep stdout for the one line scripts read (the URL).
  const logger = pino({ level, base: { pid: process.pid } }, pino.destination(2));

  // Unset: a real model when Ollama answers, else the simulated one, said plainly.
  const explicit = values.model ?? (env.LEASH_MODEL?.trim() || undefined);
  const choice: { model: string; note: string | null } =
    explicit === undefined
      ? await detectDefaultModel(env)
      : { model: explicit, note: explicit.startsWith('simulated') ? SIMULATED_NOTE : null };
  const server = await startServer({
    host,
    port,
    runtime: runtimeLimitsFromEnv(env),
    rateLimit: rateLimitFromEnv(env),
    db: values.db ?? (env.LEASH_DB?.trim() || DEFAULT_DB),
    model: choice.model,
    // Explicit (not left to the environment), so the flags win and unset means the default.
    allowModels: allowModels ?? [...DEFAULT_MODEL_PATTERNS],
    gguf: { ...gguf, modelsDir },
    apiKeys,
    security,
    logger,
    ...(ownTasks.length > 0 && { tasks: [...builtinTasks, ...ownTasks] }),
  });
  process.stdout.write(`leash listening on ${server.url}\n`);
  if (choice.note !== null) process.stdout.write(`model ${choice.model}: ${choice.note}\n`);
  if (apiKeys.size === 0) logger.info('no LEASH_API_KEYS: no auth, every request is owner "local"');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // Second signal: the operator doesn't want to wait.
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing running tasks (send the signal again to exit now)');
      server.close().then(
        () => {
          logger.info('stopped');
          resolve(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'error during shutdown');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
