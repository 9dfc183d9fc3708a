// Entry of a pooled worker thread (isolation: 'worker').
import { parentPort } from 'node:worker_threads';
import { serveParent } from './child.ts';
import type { ToChild } from './protocol.ts';

if (!parentPort) throw new Error('worker-entry must run in a worker thread');
const port = parentPort;
serveParent({ post: (m) => port.postMessage(m), onMessage: (fn) => port.on('message', (m: ToChild) => fn(m)) });
