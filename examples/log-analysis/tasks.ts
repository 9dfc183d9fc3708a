// Seed 003's job done right: an Android log (ANR traces, tombstones, crashes) too big
// to read at once, analysed chunk by chunk as a leash task.
//   - reads the file in chunks from a byte offset (never the whole file in memory);
//   - reports progress with chunk and line counts;
//   - streams each finding as it is found (output.delta);
//   - asks a model about each chunk's findings, passing ctx.signal down to the call;
//   - checkpoints after every chunk, so a crash resumes from the last one (resume: true);
//   - stops within milliseconds of a cancel: every await takes the signal.
//
//   LOG_DIR=./logs npx leash serve --tasks ./tasks.ts
//   npx leash run log-analysis --input '{"file": "device.log"}'

import { open, realpath, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { defineTask, LeashError, z } from 'leash';

/** Where logs may be read from: a request names a file in it, never a path of its own. */
const LOG_DIR = process.env.LOG_DIR ?? join(import.meta.dirname, 'logs');

const PATTERNS: Array<[kind: string, re: RegExp]> = [
  ['anr', /\bANR in ([\w.$]+)/],
  ['crash', /FATAL EXCEPTION: (\S+)/],
  ['native-crash', /Fatal signal (\d+ \(\w+\))/],
  ['tombstone', /\*\*\* \*\*\* \*\*\* \*\*\*/],
  ['oom', /java\.lang\.OutOfMemoryError/],
];

interface Checkpoint {
  offset: number;
  chunk: number;
  lines: number;
  findings: number;
}

export default defineTask({
  type: 'log-analysis',
  description: 'Finds ANRs, crashes and tombstones in a large log, chunk by chunk, with a model note per chunk.',
  input: z.object({
    /** A file name inside LOG_DIR. */
    file: z.string().min(1).max(255),
    chunk_bytes: z
      .number()
      .int()
      .min(4096)
      .max(16 * 1024 * 1024)
      .default(1024 * 1024),
    model: z.string().optional(),
  }),
  resume: true,
  deadlineMs: 60 * 60 * 1000,
  async run(input, ctx) {
    const path = await resolveInside(LOG_DIR, input.file);
    const size = (await stat(path)).size;
    const model = ctx.models.resolve(input.model);
    let at: Checkpoint = (ctx.resumeState as Checkpoint | null) ?? { offset: 0, chunk: 0, lines: 0, findings: 0 };
    if (at.offset > 0) ctx.log.info({ chunk: at.chunk }, 'resuming from checkpoint');
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(input.chunk_bytes);
      while (at.offset < size) {
        ctx.signal.throwIfAborted();
        const { bytesRead } = await fh.read(buf, 0, buf.length, at.offset);
        const raw = buf.subarray(0, bytesRead);
        // A chunk ends at its last newline (the rest is read again with the next one),
        // unless it is the file's end or one line longer than a chunk.
        const nl = raw.lastIndexOf(0x0a);
        const used = at.offset + bytesRead >= size || nl === -1 ? bytesRead : nl + 1;
        const lines = raw.subarray(0, used).toString('utf8').split('\n');
        if (lines.at(-1) === '') lines.pop();
        const found: string[] = [];
        lines.forEach((line, i) => {
          for (const [kind, re] of PATTERNS) {
            const m = re.exec(line);
            if (m) found.push(`${kind} at line ${at.lines + i + 1}: ${m[1] ?? line.slice(0, 80)}`);
          }
        });
        for (const f of found) ctx.emit(`${f}\n`);
        if (found.length > 0) {
          // One model call per chunk that found something; the signal reaches its socket.
          ctx.emit('  model: ');
          for await (const part of model.stream({
            messages: [
              { role: 'system', content: 'You triage Android logs. One sentence per chunk.' },
              { role: 'user', content: `Findings in this chunk:\n${found.join('\n')}` },
            ],
            abortSignal: ctx.signal,
            maxTokens: 60,
          })) {
            if (part.type === 'text-delta') ctx.emit(part.text);
          }
          ctx.emit('\n');
        }
        at = {
          offset: at.offset + used,
          chunk: at.chunk + 1,
          lines: at.lines + lines.length,
          findings: at.findings + found.length,
        };
        ctx.progress(
          Math.min(99, Math.floor((at.offset / size) * 100)),
          `chunk ${at.chunk}: ${at.lines.toLocaleString('en')} lines, ${at.findings} findings`,
        );
        await ctx.checkpoint(at);
      }
    } finally {
      await fh.close();
    }
    return { file: input.file, chunks: at.chunk, lines: at.lines, findings: at.findings };
  },
});

/** `name` inside `dir`, symlinks resolved; anything else is one "no such log" answer. */
async function resolveInside(dir: string, name: string): Promise<string> {
  const noSuch = new LeashError('invalid_request', `No log named "${name.slice(0, 100)}" in the log directory.`);
  if (name.includes('\0')) throw noSuch;
  try {
    const root = await realpath(dir);
    const real = await realpath(join(root, name));
    if (!real.startsWith(root + sep) || !(await stat(real)).isFile()) throw noSuch;
    return real;
  } catch {
    throw noSuch;
  }
}
