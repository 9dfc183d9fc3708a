import { writeTinyGguf } from './test/helpers/tiny-gguf.ts';
import { createModelRegistry } from './src/models/registry.ts';
import { ggufStats } from './src/models/gguf.ts';
const f = writeTinyGguf({ seed: 1 });
const reg = createModelRegistry({ defaultModel: 'simulated', env: {} });
for (const q of process.argv.slice(2)) {
  const m = reg.resolve(`gguf:${f.path}${q}`);
  const t = Date.now();
  const parts = [];
  for await (const p of m.stream({ messages: [{ role: 'user', content: 'hello world' }], maxTokens: 20 })) parts.push(p);
  console.log(q, Date.now() - t, 'ms', parts.length, JSON.stringify(parts.filter(p => p.type === 'text-delta').map(p => p.text)), JSON.stringify(parts.at(-1)));
}
console.log(ggufStats());
f.cleanup();
