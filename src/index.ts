// `leash`: the server library. What a task module and an embedding program need:
// define task types, start a server with them, and the types a handler sees.
//   import { defineTask, z } from 'leash';
// The client SDK is `leash/client` (browser-safe: nothing of the server in its graph).

export { defineTask } from './runtime/define-task.ts';
export type { AnyTaskDefinition, TaskContext, TaskDefinition } from './runtime/define-task.ts';
export { CancelledError, sleep } from './core/cancel.ts';
export { LeashError } from './core/errors.ts';
export type { CancelReason, Task, TaskEvent, TaskStatus } from './core/types.ts';
export type { ChatMessage, Model, ModelCallOptions, ModelRegistry, ModelStreamPart, Usage } from './models/model.ts';
// What `ctx.store` and `ctx.log` are, so a handler can name every type its context hands it.
export type { Message, MessageStatus, Store, Thread } from './store/store.ts';
export type { Logger } from 'pino';
export { startServer } from './cli/serve.ts';
export type { RunningServer, StartServerOptions } from './cli/serve.ts';
/** The zod the task schemas are checked with (one copy: a schema made with another zod still works, but share this one). */
export { z } from 'zod';
