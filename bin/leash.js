#!/usr/bin/env node
// `leash`: from a checkout it runs the TypeScript sources directly (Node's type
// stripping, Node 24); installed from the package it runs the built dist/ (Node does
// not strip types inside node_modules).
import { existsSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `leash needs Node.js 24 or newer (this is ${process.version}); install Node 24, or run \`npm start\` from the project.\n`,
  );
  process.exit(1);
}
const source = new URL('../src/cli/main.ts', import.meta.url);
const fromSource = !import.meta.url.includes('/node_modules/') && existsSync(source);
const { main } = await import(fromSource ? source.href : '../dist/cli/main.js');
process.exit(await main(process.argv.slice(2)));
