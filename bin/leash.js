#!/usr/bin/env node
// leash runs its TypeScript directly (Node's type stripping), so it needs Node 24.
import process from 'node:process';

const major = Number(process.versions.node.split('.')[0]);
if (major < 23) {
  process.stderr.write(
    `leash needs Node.js 24 or newer (this is ${process.version}); install Node 24, or run \`npm start\` from the project.\n`,
  );
  process.exit(1);
}
const { main } = await import('../src/cli/main.ts');
process.exit(await main(process.argv.slice(2)));
