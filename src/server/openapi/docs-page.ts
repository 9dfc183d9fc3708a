// The browsable reference at /docs: the OpenAPI document rendered to one HTML page on
// the server. No script and no CDN, so it works offline and under the strict CSP of
// security-headers.ts (only inline styles, which that policy allows); the machine-
// readable document is at /openapi.json for Swagger UI, Scalar or a code generator.

import type { OpenApiDocument } from './document.ts';

type Json = Record<string, unknown>;

const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Inline code spans of the descriptions (`x`) as <code>; everything else escaped. */
const text = (s: unknown): string => esc(s).replace(/`([^`]+)`/g, '<code>$1</code>');

const refName = (ref: string): string => ref.slice(ref.lastIndexOf('/') + 1);

/** A schema in one line: `string ≤ 64`, `Task`, `array of Task`, `"a" | "b"`, … */
function typeOf(s: Json | undefined): string {
  if (s === undefined || Object.keys(s).length === 0) return 'any JSON';
  if (typeof s.$ref === 'string') {
    const n = refName(s.$ref);
    return `<a href="#schema-${esc(n)}">${esc(n)}</a>`;
  }
  if (Array.isArray(s.anyOf)) return (s.anyOf as Json[]).map(typeOf).join(' | ');
  if (Array.isArray(s.oneOf)) return (s.oneOf as Json[]).map(typeOf).join(' | ');
  if (Array.isArray(s.enum))
    return (s.enum as unknown[]).map((v) => `<code>${esc(JSON.stringify(v))}</code>`).join(' | ');
  if (s.const !== undefined) return `<code>${esc(JSON.stringify(s.const))}</code>`;
  const t = Array.isArray(s.type) ? (s.type as string[]).join(' | ') : String(s.type ?? 'any');
  if (s.type === 'array') return `array of ${typeOf(s.items as Json | undefined)}`;
  const big = (v: unknown): boolean => typeof v === 'number' && Math.abs(v) >= Number.MAX_SAFE_INTEGER;
  const bounds = [
    s.minLength !== undefined && `≥ ${s.minLength} chars`,
    s.maxLength !== undefined && `≤ ${s.maxLength} chars`,
    s.minimum !== undefined && !big(s.minimum) && `≥ ${s.minimum}`,
    s.exclusiveMinimum !== undefined && `> ${s.exclusiveMinimum}`,
    s.maximum !== undefined && !big(s.maximum) && `≤ ${s.maximum}`,
    s.format !== undefined && String(s.format),
  ].filter(Boolean);
  return esc(t) + (bounds.length > 0 ? ` <span class="b">(${esc(bounds.join(', '))})</span>` : '');
}

/** An object schema as a table of its fields; anything else as its one-line type. */
function fields(s: Json | undefined): string {
  const props = s?.properties as Record<string, Json> | undefined;
  if (s === undefined || props === undefined) return `<p>${typeOf(s)}</p>`;
  const req = new Set((s.required as string[] | undefined) ?? []);
  const rows = Object.entries(props)
    .map(
      ([name, p]) =>
        `<tr><td><code>${esc(name)}</code>${req.has(name) ? ' <span class="r">required</span>' : ''}</td><td>${typeOf(p)}</td><td>${text(p.description ?? '')}</td></tr>`,
    )
    .join('');
  return `<table><tr><th>field</th><th>type</th><th></th></tr>${rows}</table>`;
}

function operation(path: string, method: string, op: Json): string {
  const id = String(op.operationId);
  const params = (op.parameters as Json[] | undefined) ?? [];
  const body = (op.requestBody as Json | undefined)?.content as Record<string, Json> | undefined;
  const responses = op.responses as Record<string, Json>;
  const paramRows = params
    .map(
      (p) =>
        `<tr><td><code>${esc(p.name)}</code> <span class="b">${esc(p.in)}</span>${p.required ? ' <span class="r">required</span>' : ''}</td><td>${typeOf(p.schema as Json)}</td><td>${text(p.description ?? '')}</td></tr>`,
    )
    .join('');
  const answers = Object.entries(responses)
    .map(([status, r]) => {
      const content = r.content as Record<string, Json> | undefined;
      const [type, media] = Object.entries(content ?? {})[0] ?? [];
      const shape = media === undefined ? '' : ` — <code>${esc(type)}</code> ${typeOf(media.schema as Json)}`;
      return `<li><b>${esc(status)}</b> ${text(r.description)}${shape}</li>`;
    })
    .join('');
  return `<section class="op" id="${esc(id)}">
<h3><span class="m m-${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code></h3>
<p>${text(op.summary)}${(op.security as unknown[] | undefined)?.length === 0 ? ' <span class="b">no key needed</span>' : ''}</p>
${op.description ? `<p>${text(op.description)}</p>` : ''}
${paramRows ? `<h4>Parameters</h4><table><tr><th>name</th><th>type</th><th></th></tr>${paramRows}</table>` : ''}
${body ? `<h4>Body <span class="b">application/json</span></h4>${fields(body['application/json']?.schema as Json)}` : ''}
<h4>Answers</h4><ul>${answers}</ul>
</section>`;
}

export function renderDocsPage(doc: OpenApiDocument): string {
  const ops: Array<{ tag: string; html: string; nav: string }> = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const tag = ((op.tags as string[] | undefined) ?? ['other'])[0]!;
      ops.push({
        tag,
        html: operation(path, method, op),
        nav: `<li><a href="#${esc(op.operationId)}"><span class="m m-${esc(method)}">${esc(method.toUpperCase())}</span> ${esc(path)}</a></li>`,
      });
    }
  }
  const byTag = doc.tags.map((t) => ({ ...t, ops: ops.filter((o) => o.tag === t.name) }));
  const nav = byTag.map((t) => `<li><b>${esc(t.name)}</b><ul>${t.ops.map((o) => o.nav).join('')}</ul></li>`).join('');
  const body = byTag
    .map(
      (t) =>
        `<h2 id="tag-${esc(t.name)}">${esc(t.name)}</h2><p>${text(t.description)}</p>${t.ops.map((o) => o.html).join('')}`,
    )
    .join('');
  const schemas = Object.entries(doc.components.schemas)
    .map(([name, s]) => `<section class="op" id="schema-${esc(name)}"><h3>${esc(name)}</h3>${fields(s)}</section>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(doc.info.title)} API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;display:flex;color:#1d1d1f}
nav{width:18rem;flex:none;height:100vh;overflow:auto;position:sticky;top:0;background:#f5f5f7;padding:1rem;box-sizing:border-box;font-size:13px}
nav ul{list-style:none;padding-left:.5rem}nav a{color:inherit;text-decoration:none;white-space:nowrap}
main{max-width:60rem;padding:1rem 2rem;min-width:0}
.op{border-top:1px solid #ddd;padding:.5rem 0}
table{border-collapse:collapse;width:100%;font-size:14px}td,th{border-bottom:1px solid #eee;text-align:left;padding:.2rem .4rem;vertical-align:top}
code{background:#f0f0f2;padding:0 .2rem;border-radius:3px}
.m{display:inline-block;min-width:3.5rem;font:bold 12px monospace;color:#fff;border-radius:3px;padding:1px 4px;text-align:center}
.m-get{background:#1a7f37}.m-post{background:#0969da}.m-delete{background:#cf222e}
.b{color:#6e6e73;font-size:12px}.r{color:#cf222e;font-size:12px}
</style></head>
<body><nav><p><b>${esc(doc.info.title)} ${esc(doc.info.version)}</b></p><p><a href="/openapi.json">openapi.json</a></p><ul>${nav}<li><a href="#schemas"><b>schemas</b></a></li></ul></nav>
<main><h1>${esc(doc.info.title)} API reference</h1><p>${text(doc.info.description)}</p>
<p>Send <code>Authorization: Bearer &lt;key&gt;</code> on every call except those marked “no key needed”.</p>
${body}<h2 id="schemas">Schemas</h2>${schemas}</main></body></html>
`;
}
