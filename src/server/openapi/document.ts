// The OpenAPI 3.1 document of the /api routes, generated from their zod schemas
// (zod's own JSON Schema output: 3.1 speaks JSON Schema 2020-12). Schemas that carry a
// `meta({id})` become components referenced from every place they appear.

import { z } from 'zod';
import { errorBodySchema } from '../../core/wire/shapes.ts';
import { ROUTES, type RouteDoc } from './paths.ts';

type Json = Record<string, unknown>;

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  paths: Record<string, Record<string, Json>>;
  components: { schemas: Record<string, Json>; securitySchemes: Json };
  security: Array<Record<string, string[]>>;
  tags: Array<{ name: string; description: string }>;
}

const TAGS = [
  { name: 'tasks', description: 'Long-running work that stops for real (SPEC §1).' },
  { name: 'threads', description: 'Conversations whose runs are `chat` tasks (SPEC §2).' },
  { name: 'websocket', description: 'One socket for runs, cancels and many event streams (SPEC §3).' },
  { name: 'workers', description: 'Remote workers in any language (SPEC §6).' },
  { name: 'models', description: 'The models this server may call.' },
  { name: 'health', description: 'Probes for load balancers.' },
];

/** The statuses every keyed route may answer besides its own. */
const COMMON_ERRORS = [401, 429, 500];

const STATUS_TEXT: Record<number, string> = {
  400: 'The request is wrong: `details` names each bad field (`invalid_request`), or an unknown type or model.',
  401: 'Missing or wrong API key (`unauthorized`).',
  403: 'Host or Origin not allowed (`host_not_allowed`, `origin_not_allowed`).',
  404: 'No such task or thread — or another owner’s (`not_found`).',
  409: 'The state forbids it (`task_ended`, `task_active`, `thread_busy`, `idempotency_conflict`).',
  413: 'The body is too large (`payload_too_large`).',
  429: 'Slow down: `queue_full`, `rate_limited`, `too_many_streams` (Retry-After says how long).',
  500: 'An internal error (`internal_error`); its cause is only logged.',
  503: 'Not ready, or the store is unavailable.',
};

/** JSON Schema of `schema` with its named parts moved to `defs` and referenced as components. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output', defs: Record<string, Json>): Json {
  const out = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Json;
  const text = JSON.stringify(out).replaceAll('"#/$defs/', '"#/components/schemas/');
  const { $schema: _s, $defs, ...rest } = JSON.parse(text) as Json & { $defs?: Record<string, Json> };
  // A named schema seen as input and as output can differ (defaults, transforms): the output wins.
  for (const [name, def] of Object.entries($defs ?? {})) if (io === 'output' || !(name in defs)) defs[name] = def;
  // A named schema itself comes back as a $ref to its def.
  return rest;
}

function parameters(route: RouteDoc, defs: Record<string, Json>): Json[] {
  const out: Json[] = [];
  const add = (where: 'path' | 'query', obj: z.ZodObject | undefined): void => {
    if (obj === undefined) return;
    const js = jsonSchema(obj, 'input', defs) as { properties?: Record<string, Json>; required?: string[] };
    for (const [name, schema] of Object.entries(js.properties ?? {})) {
      const { description, ...s } = schema as Json & { description?: string };
      out.push({
        name,
        in: where,
        required: where === 'path' || (js.required ?? []).includes(name),
        schema: s,
        ...(typeof description === 'string' && { description }),
        // `?status=a,b` and `?status=a&status=b` both work; the document shows the repeated form.
        ...(s.type === 'array' && { style: 'form', explode: true }),
      });
    }
  };
  add('path', route.params);
  add('query', route.query);
  for (const h of route.headers ?? []) {
    out.push({ name: h.name, in: 'header', required: false, description: h.description, schema: { type: 'string' } });
  }
  return out;
}

function operation(route: RouteDoc, defs: Record<string, Json>): Json {
  const responses: Record<string, Json> = {};
  for (const [status, a] of Object.entries(route.answers)) {
    const content =
      a.contentType !== undefined
        ? { [a.contentType]: { schema: { type: 'string' } } }
        : a.schema !== undefined
          ? { 'application/json': { schema: jsonSchema(a.schema, 'output', defs) } }
          : undefined;
    responses[status] = { description: a.description, ...(content && { content }) };
  }
  const errorRef = jsonSchema(errorBodySchema, 'output', defs);
  const statuses = [...new Set([...(route.errors ?? []), ...(route.public ? [] : COMMON_ERRORS)])].sort();
  for (const status of statuses) {
    responses[String(status)] = {
      description: STATUS_TEXT[status] ?? 'An error.',
      content: { 'application/json': { schema: errorRef } },
    };
  }
  const params = parameters(route, defs);
  return {
    tags: [route.tag],
    summary: route.summary,
    operationId: operationId(route),
    ...(route.description !== undefined && { description: route.description }),
    ...(params.length > 0 && { parameters: params }),
    ...(route.body !== undefined && {
      requestBody: {
        required: !(route.body.safeParse(undefined).success || route.body.safeParse({}).success),
        content: { 'application/json': { schema: jsonSchema(route.body, 'input', defs) } },
      },
    }),
    responses,
    ...(route.public && { security: [] }),
  };
}

/** `post /api/tasks/{id}/cancel` → `postTasksIdCancel`. */
function operationId(route: RouteDoc): string {
  const words = route.path
    .replace(/^\/api\//, '/')
    .split(/[/{}_-]+/)
    .filter(Boolean);
  return route.method + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}

export function buildOpenApiDocument(version: string): OpenApiDocument {
  const defs: Record<string, Json> = {};
  const paths: OpenApiDocument['paths'] = {};
  for (const route of ROUTES) (paths[route.path] ??= {})[route.method] = operation(route, defs);
  return {
    openapi: '3.1.0',
    info: {
      title: 'leash',
      version,
      description:
        'Long-running AI work as tasks that stop for real. Errors are `{"error": {"code", "message", "details"?}}` with the status of their code. The OpenAI-compatible surface under /v1 follows OpenAI’s own reference.',
    },
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(defs).sort(([a], [b]) => a.localeCompare(b))),
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API key of LEASH_API_KEYS.' } },
    },
    security: [{ bearer: [] }],
    tags: TAGS,
  };
}
