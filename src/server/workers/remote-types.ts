// The task types served by remote workers: registered with the runtime as ordinary
// types whose handler is the hub's dispatch, each with the input schema its workers
// declared (if any), and stored so every node of the cluster knows them (a create of
// one works on any node; no node claims its queued tasks as an unknown type).

import type { Logger } from 'pino';
import type { AnyTaskDefinition, TaskContext } from '../../runtime/define-task.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import { LeashError } from '../../core/errors.ts';
import type { HelloFrame } from './protocol.ts';
import { compileInputSchema, remoteInput, type InputSchema } from './input-schemas.ts';

/** Remote task types one node registers at most (each hello may add up to 64). */
export const MAX_REMOTE_TYPES = 1024;

/** Who declared a schema: the id of a worker registered on this node that declared `text` for `type`, or null. */
export type SchemaHolder = (type: string, text: string) => string | null;

export class RemoteTypes {
  readonly #runtime: Runtime;
  readonly #log: Logger;
  readonly #dispatch: (type: string, input: unknown, ctx: TaskContext) => Promise<unknown>;
  readonly #holder: SchemaHolder;
  readonly #types = new Map<string, { schema: InputSchema | null }>();
  /** Declarations this node already stored (type + schema text): a reconnect writes nothing. */
  readonly #saved = new Set<string>();
  /** The types declared on any node, read from the store (hellos wait for it). */
  readonly loaded: Promise<void>;
  #unsubscribe: (() => void) | null;

  constructor(
    runtime: Runtime,
    log: Logger,
    dispatch: (type: string, input: unknown, ctx: TaskContext) => Promise<unknown>,
    holder: SchemaHolder,
  ) {
    this.#runtime = runtime;
    this.#log = log;
    this.#dispatch = dispatch;
    this.#holder = holder;
    // Read them now, and again when a node says it stored a new one.
    this.#unsubscribe = runtime.store.notifier.subscribe('types', () => void this.#loadStored());
    this.loaded = this.#loadStored();
  }

  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
  }

  get size(): number {
    return this.#types.size;
  }

  names(): string[] {
    return [...this.#types.keys()];
  }

  has(type: string): boolean {
    return this.#types.has(type);
  }

  /**
   * Makes `type` a remote type of the runtime. False when the server serves it
   * itself (a built-in or a --tasks module): a worker can't take over a local type.
   */
  declare(type: string): boolean {
    if (this.#types.has(type)) return true;
    if (this.#runtime.taskType(type) !== undefined) return false;
    // Types are never forgotten (queued tasks may name them): bound what keys can add.
    if (this.#types.size >= MAX_REMOTE_TYPES) {
      throw new LeashError(
        'too_many_types',
        `This server already knows ${MAX_REMOTE_TYPES} remote task types; it takes no new ones.`,
      );
    }
    const entry = { schema: null as InputSchema | null };
    this.#runtime.addTaskType(this.#definition(type, () => entry.schema));
    this.#types.set(type, entry);
    return true;
  }

  /**
   * Checks a hello's types and schemas and, when all pass, declares them (a refused
   * hello leaves no trace); throws the LeashError to send otherwise. Returns the
   * canonical text of each declared schema. Storing them is `save`'s.
   */
  accept(hello: HelloFrame): Map<string, InputSchema> {
    const schemas = new Map<string, InputSchema>();
    for (const [t, schema] of Object.entries(hello.schemas ?? {})) schemas.set(t, compileInputSchema(t, schema));
    for (const t of hello.types) {
      if (this.#runtime.taskType(t) !== undefined && !this.#types.has(t)) {
        throw new LeashError(
          'type_conflict',
          `Task type "${t}" is served by the server itself; a worker can't serve it. Pick another name.`,
        );
      }
      const schema = schemas.get(t);
      if (schema) this.#checkSchema(t, schema);
    }
    for (const t of hello.types) {
      this.declare(t);
      const schema = schemas.get(t);
      if (schema) this.#types.get(t)!.schema = schema;
    }
    return schemas;
  }

  /**
   * A different schema than the one a worker registered here still declares is refused
   * (`type_conflict`): two workers of one type must accept the same inputs. With none
   * left, the new one replaces it.
   */
  #checkSchema(type: string, schema: InputSchema): void {
    const current = this.#types.get(type)?.schema ?? null;
    if (current === null || current.text === schema.text) return;
    const holder = this.#holder(type, current.text);
    if (holder !== null) {
      throw new LeashError(
        'type_conflict',
        `Task type "${type}" is already served with another input schema (by worker ${holder}); a worker of a type must declare the same schema. Stop the other workers first, or serve the new schema under a new type name.`,
      );
    }
  }

  /** Stores the types (and schemas) a worker declared and tells the other nodes. */
  async save(hello: HelloFrame, schemas: Map<string, InputSchema>): Promise<void> {
    const now = new Date().toISOString();
    try {
      let changed = false;
      for (const t of hello.types) {
        const key = `${t}\u001f${schemas.get(t)?.text ?? ''}`;
        if (this.#saved.has(key)) continue;
        await this.#runtime.store.saveRemoteType(t, schemas.get(t)?.text ?? null, now);
        this.#saved.add(key);
        changed = true;
      }
      if (changed) await this.#runtime.store.notifier.publish('types', '');
    } catch (err) {
      this.#log.error({ err }, 'storing the remote-worker types failed (other nodes may not know them)');
    }
  }

  /** Declares here the types remote workers declared on any node (and their schemas). */
  async #loadStored(): Promise<void> {
    let rows: Awaited<ReturnType<Runtime['store']['listRemoteTypes']>>;
    try {
      rows = await this.#runtime.store.listRemoteTypes();
    } catch (err) {
      this.#log.error({ err }, 'reading the remote-worker types failed');
      return;
    }
    for (const row of rows) {
      try {
        if (!this.declare(row.type)) {
          this.#log.warn({ type: row.type }, 'a stored remote-worker type is served by this server itself: ignored');
          continue;
        }
        if (row.schema === null) continue;
        const entry = this.#types.get(row.type)!;
        if (entry.schema?.text === row.schema) continue;
        // A worker here that declared the current one keeps it (the conflict is its to report).
        if (entry.schema !== null && this.#holder(row.type, entry.schema.text) !== null) continue;
        entry.schema = compileInputSchema(row.type, JSON.parse(row.schema));
      } catch (err) {
        this.#log.warn({ err, type: row.type }, 'a stored remote-worker type could not be loaded');
      }
    }
  }

  #definition(type: string, schema: () => InputSchema | null): AnyTaskDefinition {
    return {
      type,
      description: 'served by remote workers',
      // What its workers' declared JSON Schema accepts; without one, anything within the
      // body size and JSON depth limits (the worker validates its input).
      input: remoteInput(schema),
      run: (input, ctx) => this.#dispatch(type, input, ctx),
    };
  }
}
