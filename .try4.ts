import { writeTinyGguf } from './test/helpers/tiny-gguf.ts';
import { getLlama, LlamaLogLevel, readGgufFileInfo } from 'node-llama-cpp';
import { writeFileSync } from 'node:fs';
const f = writeTinyGguf({ seed: 1 });
const llama = await getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.warn });
const model = await llama.loadModel({ modelPath: f.path });
const ctx = await model.createContext({ contextSize: 256, threads: 1 });
const seq = ctx.getSequence();
let n = 0;
for await (const tok of seq.evaluate([1, 300, 301], { temperature: 0 })) { if (++n > 3) break; }
writeFileSync(f.dir + '/garbage.gguf', Buffer.from('this is not a gguf model at all, just text bytes'.repeat(100)));
try { await llama.loadModel({ modelPath: f.dir + '/garbage.gguf' }); } catch (e) { console.log('garbage:', e.constructor.name, e.message); }
try { await llama.loadModel({ modelPath: f.dir + '/missing.gguf' }); } catch (e) { console.log('missing:', e.constructor.name, e.message); }
const { readFileSync } = await import('node:fs');
const full = readFileSync(f.path);
writeFileSync(f.dir + '/trunc.gguf', full.subarray(0, Math.floor(full.length / 2)));
try { await llama.loadModel({ modelPath: f.dir + '/trunc.gguf' }); console.log('trunc loaded?!'); } catch (e) { console.log('trunc:', e.constructor.name, e.message); }
writeFileSync(f.dir + '/hdr.gguf', full.subarray(0, 5000));
try { await llama.loadModel({ modelPath: f.dir + '/hdr.gguf' }); console.log('hdr loaded?!'); } catch (e) { console.log('hdr:', e.constructor.name, e.message); }
writeFileSync(f.dir + '/empty.gguf', Buffer.alloc(0));
try { await llama.loadModel({ modelPath: f.dir + '/empty.gguf' }); console.log('empty loaded?!'); } catch (e) { console.log('empty:', e.constructor.name, e.message); }
console.log('done, not disposing');
