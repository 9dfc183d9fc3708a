import { writeTinyGguf } from './test/helpers/tiny-gguf.ts';
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';
const f = writeTinyGguf({ seed: Number(process.argv[2] ?? 1) });
const llama = await getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.warn });
const model = await llama.loadModel({ modelPath: f.path });
for (const temperature of [0, 0.8]) for (const seed of [1, 1, 2]) {
const ctx = await model.createContext({ contextSize: 256, threads: 1 });
const seq = ctx.getSequence();
const toks = model.tokenize('hello world, the cat is a dog', false);
let out: number[] = [];
const t = Date.now();
for await (const tok of seq.evaluate([model.tokens.bos!, ...toks], { temperature, seed })) {
  out.push(tok);
  if (out.length >= 30) break;
}
console.log(temperature, seed, Date.now() - t, 'ms', JSON.stringify(model.detokenize(out)), ctx.contextSize, seq.tokenMeter.getState());
await ctx.dispose();
}
await model.dispose(); await llama.dispose();
f.cleanup();
