// `leash serve --tasks ./my-tasks.ts` (repeatable; LEASH_TASKS, comma-separated):
// the operator's own task types. A module exports its definitions as the default
// export (one, or an array) or as named exports. Anything wrong stops the start with
// one line naming the file: a module that fails to import, exports no task, exports
// something that is not one, has a schema zod cannot use, or reuses a type name.

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyTaskDefinition } from '../runtime/define-task.ts';
import { taskExportsOf } from '../runtime/task-exports.ts';
import { ISOLATIONS } from '../core/types.ts';
import { UsageError } from './usage-error.ts';

const TYPE_RE = /^[a-z][a-z0-9_.-]{0,63}$/;

/** Why `value` is not a usable task definition, or null when it is one. */
export function taskDefinitionProblem(value: unknown): string | null {
  if (value === null || typeof value !== 'object')
    return `${describe(value)} is not a task definition (use defineTask)`;
  const d = value as Partial<Record<keyof AnyTaskDefinition, unknown>>;
  if (typeof d.type !== 'string') return 'an export has no string "type" (use defineTask)';
  if (!TYPE_RE.test(d.type)) return `task type "${d.type.slice(0, 80)}" must match ${TYPE_RE}`;
  if (typeof d.run !== 'function') return `task "${d.type}" has no run(input, ctx) function`;
  const schema = d.input as { safeParse?: unknown; _zod?: unknown } | undefined;
  if (schema === null || typeof schema !== 'object' || typeof schema.safeParse !== 'function') {
    return `task "${d.type}": "input" must be a zod schema (z.object({...}))`;
  }
  if (d.isolation !== undefined && !(ISOLATIONS as readonly unknown[]).includes(d.isolation)) {
    return `task "${d.type}": isolation must be inline, worker or process`;
  }
  if (d.isolation !== undefined && d.isolation !== 'inline' && typeof d.module !== 'string') {
    return `task "${d.type}" runs isolated: add \`module: import.meta.url\``;
  }
  return null;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'function' ? 'a function' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * Imports each module (paths relative to `cwd`) and returns its task definitions.
 * `taken` maps type names already registered (the built-ins) to where they come from.
 * Throws a UsageError (exit 2) naming the file and the problem.
 */
export async function loadTaskModules(
  paths: readonly string[],
  taken: ReadonlyMap<string, string>,
  cwd: string = process.cwd(),
): Promise<AnyTaskDefinition[]> {
  const owners = new Map(taken);
  const out: AnyTaskDefinition[] = [];
  for (const p of paths) {
    const fail = (problem: string): never => {
      throw new UsageError(`--tasks ${p}: ${problem}`);
    };
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(resolve(cwd, p)).href)) as Record<string, unknown>;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(resolve(cwd, p))) fail('no such file');
      fail(`failed to load: ${firstLine(e)}`);
    }
    const defs = taskExportsOf(mod!);
    if (defs.length === 0) fail('exports no task definition (export default defineTask({...}))');
    for (const d of defs) {
      const problem = taskDefinitionProblem(d);
      if (problem !== null) fail(problem);
      const def = d as AnyTaskDefinition;
      const prev = owners.get(def.type);
      if (prev !== undefined) fail(`task type "${def.type}" is already defined by ${prev}`);
      owners.set(def.type, p);
      out.push(def);
    }
  }
  return out;
}

function firstLine(e: Error): string {
  const m = (e?.message ?? String(e)).split('\n', 1)[0] ?? '';
  return m.length > 300 ? `${m.slice(0, 300)}…` : m;
}
