// The defaults of `leash serve` and its --help text, apart from the server so that
// `leash help serve` loads none of it.

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8080;
export const DEFAULT_DB = './leash.db';
export const DEFAULT_MODEL = 'simulated';

export const SERVE_USAGE = `Usage: leash serve [--host HOST] [--port PORT] [--db FILE] [--model MODEL]
                   [--models PATTERNS] [--models-dir DIR] [--tasks FILE]...

Runs the leash HTTP server.

Options (environment variable in brackets):
  --host HOST     interface to listen on [HOST] (default ${DEFAULT_HOST})
  --port PORT     TCP port, 0 for any free one [PORT] (default ${DEFAULT_PORT})
  --db FILE|URL   SQLite database file, or postgres://user@host/db to run several
                  nodes over one PostgreSQL [LEASH_DB] (default ${DEFAULT_DB})
  --model MODEL   default model, e.g. simulated or openai:gpt-4o-mini [LEASH_MODEL] (default: the
                  first model of an Ollama answering at OLLAMA_HOST, else ${DEFAULT_MODEL})
  --tasks FILE    a module of your own task types (export default defineTask({...}) or
                  an array); repeat for several [LEASH_TASKS, comma-separated]
  --models LIST   models callers may name: comma list, * matches anything, matched on the
                  name before any ?parameters, e.g. simulated*,openai:gpt-4o-mini,gguf:*
                  [LEASH_MODELS] (default: the default model and simulated*); any other
                  name is refused with 400 model_not_allowed before any file or network use
  --models-dir DIR  the only directory gguf:<file> models are loaded from [LEASH_MODELS_DIR]
                  (default unset: gguf models are off)
  -h, --help      show this help

Also: LEASH_API_KEYS="key:owner,key2:owner2" (required for a non-loopback host), or
      LEASH_API_KEYS_FILE=path (the same entries, one per line; keeps keys out of the
      environment), LEASH_ALLOWED_HOSTS (without keys, host names served besides
      localhost/127.0.0.1/[::1]; default none), LEASH_ALLOWED_ORIGINS (origins besides
      the server's own that may write, open WebSockets and read answers via CORS;
      default none), LEASH_METRICS_PUBLIC=1 (/metrics without a key; default: it needs
      one when keys are set), LEASH_MAX_STREAMS_PER_OWNER (open event streams, long
      polls and WebSockets per owner on a node, 429 past it; default 100),
      LEASH_LOG_LEVEL (default info; logs go to stderr as JSON),
      LEASH_CONCURRENCY (tasks this node runs at once, default 64),
      LEASH_MAX_RUNNING_PER_OWNER (default 4), LEASH_MAX_QUEUED_PER_OWNER (default 1000),
      LEASH_RETENTION_DAYS (ended tasks kept, default 7), LEASH_SHUTDOWN_GRACE_MS (default 10000),
      LEASH_LEASE_MS (PostgreSQL: a stopped node's tasks are recovered this long after its
      last heartbeat, default 30000), LEASH_NODE_ID (this node's name in the database and
      logs, default random), LEASH_RATE_LIMIT (requests per minute per API key, answered
      429 with Retry-After past it; default off), LEASH_SQLITE_THREAD=0 (run SQLite on the
      main thread instead of its own), LEASH_EVENT_BATCH_MS (streamed events are committed
      at most this often, up to 5× that while many tasks stream; readers get them at once
      from memory; default 100 on SQLite, 0 on PostgreSQL), LEASH_THREAD_CONTEXT_CHARS (the most characters of a thread sent to
      the model per turn, oldest turns left out first; default 32000), LEASH_ISOLATION (how
      task types run, e.g. "chat=process,analyze=worker"; "*=worker" for every type; inline
      handlers that ignore a cancel are detached after their grace, isolated ones killed),
      LEASH_GRACE_MS (how long a handler may take to stop after a cancel, by type, e.g.
      "chat=5000" or "*=3000"; default 2000), LEASH_MAX_UNWRITTEN_EVENTS (events waiting for
      a store that is down, past which creates answer 503 and tasks that emit fail; default
      100000).
      Remote workers (docs/workers.md): LEASH_WORKER_TYPES (task types served by workers,
      known from the start; set it on every node), LEASH_WORKER_LEASE_MS (a worker silent
      this long loses its tasks; default 15000), LEASH_WORKER_PING_MS (default 5000),
      LEASH_WORKER_ACCEPT_MS (an assignment not accepted in time goes to another worker;
      default 5000).
      gguf limits: LEASH_GGUF_MAX_CONTEXT (largest context a call gets, tokens; a request
      may ask less; default 4096), LEASH_GGUF_THREADS (threads per call and the most a
      request may ask; default the CPU's math cores), LEASH_GGUF_IDLE_MS (a loaded model
      unused this long is unloaded; default 600000), LEASH_GGUF_MAX_LOADED (models loaded
      at once; past it the least recently used idle one is unloaded, and when all are in
      use a call fails with 503 models_busy; default 2).`;
