// Entry of a pooled child process (isolation: 'process'), talking over the IPC channel.
import { serveParent } from './child.ts';
import type { ToChild } from './protocol.ts';

if (!process.send) throw new Error('process-entry must be started with an IPC channel');
serveParent({
  post: (m) => process.send!(m),
  onMessage: (fn) => process.on('message', (m: ToChild) => fn(m)),
});
// The parent going away ends this process too: no orphan keeps burning CPU.
process.on('disconnect', () => process.exit(0));
