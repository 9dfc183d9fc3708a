// `GET /openapi.json` and `GET /docs`: public (they describe the API, they hold no
// data), built once when the server starts.

import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { buildOpenApiDocument } from './document.ts';
import { renderDocsPage } from './docs-page.ts';

export const OPENAPI_PATH = '/openapi.json';
export const DOCS_PATH = '/docs';

const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export function registerApiDocs(app: FastifyInstance): void {
  const doc = buildOpenApiDocument(version);
  const json = JSON.stringify(doc);
  const page = renderDocsPage(doc);
  app.get(OPENAPI_PATH, { config: { public: true } }, async (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(json),
  );
  app.get(DOCS_PATH, { config: { public: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(page),
  );
}
