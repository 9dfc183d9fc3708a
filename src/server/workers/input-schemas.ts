// The JSON Schema a worker may declare for a remote type's input (its `hello`'s
// `schemas`), checked with Ajv (JSON Schema 2020-12, what Pydantic's
// `model_json_schema()` and zod's `toJSONSchema` emit) when a task is created: a bad
// input is a 400 `invalid_request` whose details name the field, before anything is
// stored. The zod schema of the type's definition carries the check, so the runtime's
// create validates it as it does every other type's input.

import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { z } from 'zod';
import { LeashError } from '../../core/errors.ts';

/** A declared schema's JSON text at most (a frame is at most 1 MiB). */
export const MAX_SCHEMA_BYTES = 64 * 1024;

// One Ajv per schema: two workers' schemas with the same `$id` must not collide, and a
// schema no type uses any more is garbage like the rest. No remote $refs (sync compile,
// no loadSchema) and no $data. Unknown keywords are ignored rather than refused (schema
// generators add their own annotations); formats are not checked (no ajv-formats).
const newAjv = (): Ajv2020 => new Ajv2020({ allErrors: true, strict: false, validateFormats: false });

/** A compiled input schema, with the canonical text two declarations are compared by. */
export interface InputSchema {
  /** JSON with sorted keys: equal schemas give equal text whatever their key order. */
  readonly text: string;
  readonly validate: ValidateFunction;
}

/** Compiles what a worker declared for `type`; an invalid schema is a LeashError naming the type. */
export function compileInputSchema(type: string, schema: unknown): InputSchema {
  const text = canonicalJson(schema);
  if (Buffer.byteLength(text) > MAX_SCHEMA_BYTES) {
    throw new LeashError('invalid_request', `The input schema of "${type}" is over ${MAX_SCHEMA_BYTES} bytes.`);
  }
  try {
    return { text, validate: newAjv().compile(schema as object) };
  } catch (e) {
    throw new LeashError(
      'invalid_request',
      `The input schema of "${type}" is not a valid JSON Schema: ${(e as Error).message}`,
      {
        details: [{ path: `schemas.${type}`, message: (e as Error).message.slice(0, 500) }],
      },
    );
  }
}

/**
 * The zod input of a remote type: anything (bounded by the body and depth limits)
 * while `current()` is null, else what its JSON Schema accepts, with one issue per
 * Ajv error (at most 20), each at the path of the field it names.
 */
export function remoteInput(current: () => InputSchema | null): z.ZodType {
  return z.unknown().superRefine((value, ctx) => {
    const schema = current();
    if (schema === null || schema.validate(value)) return;
    for (const e of (schema.validate.errors ?? []).slice(0, 20)) {
      const { path, message } = issueOf(e);
      ctx.addIssue({ code: 'custom', path, message });
    }
  });
}

function issueOf(e: ErrorObject): { path: string[]; message: string } {
  const path = e.instancePath === '' ? [] : e.instancePath.slice(1).split('/').map(unescapePointer);
  const p = e.params as { missingProperty?: string; additionalProperty?: string };
  if (e.keyword === 'required' && p.missingProperty !== undefined) {
    return { path: [...path, p.missingProperty], message: 'is required' };
  }
  if (e.keyword === 'additionalProperties' && p.additionalProperty !== undefined) {
    return { path: [...path, p.additionalProperty], message: 'is not allowed' };
  }
  return { path, message: e.message ?? `fails "${e.keyword}"` };
}

const unescapePointer = (s: string): string => s.replace(/~1/g, '/').replace(/~0/g, '~');

/** JSON with object keys sorted at every level. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : value,
  );
}
