// The task types served by remote workers: registered with the runtime as ordinary
// types whose handler is the hub's dispatch, each with the input schema its workers
// declared (if any), and stored so every node of the cluster knows them (a create of
// one works on any node; no node claims its queued tasks as an unknown type).

import type { Logger } from 'pino';
import type { AnyTaskDefinition, TaskContext } from '../../runtime/define-task.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import type { z } from 'zod';
import { LeashError } from '../../core/errors.ts';
import type { HelloFrame } from './protocol.ts';
import { compileInputSchema, remoteInput, type InputSchema } from './input-schemas.ts';

/**
 * Remote types one owner may declare (each hello may add up to 64): one tenant filling
 * the node's table must not stop the others declaring theirs.
 */
export const MAX_REMOTE_TYPES_PER_OWNER = 256;
/** Remote (owner, type) declarations one node keeps at most, all owners together. */
export const MAX_REMOTE_TYPES = 16_384;

/**
 * Who declared a schema: the id of a worker of `owner` registered on this node that
 * declared `text` for `type`, or null.
 */
export type SchemaHolder = (owner: string, type: string, text: string) => string | null;

/** Declared for every owner: LEASH_WORKER_TYPES (the operator's), no schema. */
export const EVERY_OWNER = '*';

/** One owner's declaration of a type: its schema (null: any input) and the zod input of it. */
interface Declared {
  schema: InputSchema | null;
  readonly input: z.ZodType;
}

/**
 * Remote types are their owner's: a type name one owner's workers declared is unknown
 * to another owner (a create answers `unknown_task_type` and the known types it lists
 * leave it out), each owner declares its own schema for it, and a schema conflict is
 * between workers of one owner. The runtime knows each name once (its queued tasks are
 * never taken for an unknown type); its definition answers per owner (`forOwner`).
 */
export class RemoteTypes {
  readonly #runtime: Runtime;
  readonly #log: Logger;
  readonly #dispatch: (type: string, input: unknown, ctx: TaskContext) => Promise<unknown>;
  readonly #holder: SchemaHolder;
  /** type → owner → declaration. */
  readonly #types = new Map<string, Map<string, Declared>>();
  /** Declarations per owner (MAX_REMOTE_TYPES_PER_OWNER; their sum is bound by MAX_REMOTE_TYPES). */
  readonly #perOwner = new Map<string, number>();
  /** Declarations this node already stored (owner + type + schema text): a reconnect writes nothing. */
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

  /** Type names served remotely (for some owner). */
  get size(): number {
    return this.#types.size;
  }

  names(): string[] {
    return [...this.#types.keys()];
  }

  has(type: string): boolean {
    return this.#types.has(type);
  }

  /** `owner`'s declaration of `type` (or every owner's), else undefined. */
  #of(owner: string, type: string): Declared | undefined {
    const owners = this.#types.get(type);
    return owners?.get(owner) ?? owners?.get(EVERY_OWNER);
  }

  /**
   * Makes `type` a remote type of `owner` (EVERY_OWNER: of everyone). False when the
   * server serves it itself (a built-in or a --tasks module): a worker can't take over a
   * local type. `stored`: read from the store, where it counts only against the node's
   * bound (what is stored must be known, or its queued tasks would look unknown).
   */
  declare(owner: string, type: string, stored = false): boolean {
    let owners = this.#types.get(type);
    if (owners?.has(owner)) return true;
    if (owners === undefined && this.#runtime.taskType(type) !== undefined) return false;
    // Declarations are never forgotten (queued tasks may name them): bound what keys can add.
    this.#checkRoom(stored ? null : owner, 1);
    const mine = this.#perOwner.get(owner) ?? 0;
    if (owners === undefined) {
      owners = new Map();
      this.#types.set(type, owners);
      this.#runtime.addTaskType(this.#definition(type));
    }
    const entry: Declared = { schema: null, input: remoteInput(() => entry.schema) };
    owners.set(owner, entry);
    this.#perOwner.set(owner, mine + 1);
    return true;
  }

  /** Throws `too_many_types` unless `owner` (null: anyone, the node's bound only) may declare `added` more types here. */
  #checkRoom(owner: string | null, added: number): void {
    if (owner !== null && (this.#perOwner.get(owner) ?? 0) + added > MAX_REMOTE_TYPES_PER_OWNER) {
      throw new LeashError(
        'too_many_types',
        `You may declare at most ${MAX_REMOTE_TYPES_PER_OWNER} remote task types; reuse a type name (one type can take many kinds of input) instead of adding more.`,
      );
    }
    let count = added;
    for (const n of this.#perOwner.values()) count += n;
    if (count > MAX_REMOTE_TYPES) {
      throw new LeashError(
        'too_many_types',
        `This server already knows ${MAX_REMOTE_TYPES} remote task types; it takes no new ones.`,
      );
    }
  }

  /**
   * Checks a hello's types and schemas and, when all pass, declares them for `owner` (a
   * refused hello leaves no trace); throws the LeashError to send otherwise. Returns the
   * compiled schema of each type that declared one. Storing them is `save`'s.
   */
  accept(owner: string, hello: HelloFrame): Map<string, InputSchema> {
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
      if (schema) this.#checkSchema(owner, t, schema);
    }
    // Over a bound, nothing of the hello is declared (checked before the first one is).
    const added = new Set(hello.types.filter((t) => !this.#types.get(t)?.has(owner))).size;
    this.#checkRoom(owner, added);
    for (const t of hello.types) {
      this.declare(owner, t);
      const schema = schemas.get(t);
      if (schema) this.#types.get(t)!.get(owner)!.schema = schema;
    }
    return schemas;
  }

  /**
   * A different schema than the one a worker of the same owner registered here still
   * declares is refused (`type_conflict`): two workers of one type must accept the same
   * inputs. With none left, the new one replaces it. Other owners' are theirs.
   */
  #checkSchema(owner: string, type: string, schema: InputSchema): void {
    const current = this.#types.get(type)?.get(owner)?.schema ?? null;
    if (current === null || current.text === schema.text) return;
    const holder = this.#holder(owner, type, current.text);
    if (holder !== null) {
      throw new LeashError(
        'type_conflict',
        `Task type "${type}" is already served with another input schema (by your worker ${holder}); a worker of a type must declare the same schema. Stop the other workers first, or serve the new schema under a new type name.`,
      );
    }
  }

  /** Stores the types (and schemas) `owner`'s worker declared and tells the other nodes. */
  async save(owner: string, hello: HelloFrame, schemas: Map<string, InputSchema>): Promise<void> {
    const now = new Date().toISOString();
    try {
      let changed = false;
      for (const t of hello.types) {
        const key = `${owner}\u001f${t}\u001f${schemas.get(t)?.text ?? ''}`;
        if (this.#saved.has(key)) continue;
        await this.#runtime.store.saveRemoteType(owner, t, schemas.get(t)?.text ?? null, now);
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
        if (!this.declare(row.owner, row.type, true)) {
          this.#log.warn({ type: row.type }, 'a stored remote-worker type is served by this server itself: ignored');
          continue;
        }
        if (row.schema === null) continue;
        const entry = this.#types.get(row.type)!.get(row.owner)!;
        if (entry.schema?.text === row.schema) continue;
        // A worker here that declared the current one keeps it (the conflict is its to report).
        if (entry.schema !== null && this.#holder(row.owner, row.type, entry.schema.text) !== null) continue;
        entry.schema = compileInputSchema(row.type, JSON.parse(row.schema));
      } catch (err) {
        this.#log.warn({ err, type: row.type }, 'a stored remote-worker type could not be loaded');
      }
    }
  }

  #definition(type: string): AnyTaskDefinition {
    return {
      type,
      description: 'served by remote workers',
      // Per owner (forOwner): what its workers' declared JSON Schema accepts; without one,
      // anything within the body size and JSON depth limits (the worker validates its input).
      input: remoteInput(() => null),
      forOwner: (owner) => this.#of(owner, type)?.input ?? null,
      run: (input, ctx) => this.#dispatch(type, input, ctx),
    };
  }
}
