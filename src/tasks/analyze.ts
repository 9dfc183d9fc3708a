// `analyze`: a long document, one model call per chunk, then a summary call over the
// findings. It checkpoints after every chunk, so a restart after a crash resumes at
// the next chunk instead of starting over (`resume: true`).

import { z } from 'zod';
import { defineTask } from '../runtime/define-task.ts';
import { MODEL_ENV } from '../runtime/isolation/env.ts';
import type { TaskContext } from '../runtime/define-task.ts';
import { collectStream } from '../models/collect.ts';
import type { ChatMessage, Model } from '../models/model.ts';

export const analyzeInput = z
  .object({
    document: z.string().min(1).max(5_000_000),
    chunk_size: z.number().int().min(200).max(100_000).optional(),
    instructions: z.string().max(100_000).optional(),
    model: z.string().optional(),
  })
  .strict();

export const DEFAULT_CHUNK_SIZE = 4000;

export interface AnalyzeResult {
  chunks: number;
  findings: string[];
  summary: string;
}

/** What `ctx.checkpoint` saves: the findings of the first `done` chunks of a `chunks`-chunk split. */
const resumeSchema = z.object({
  done: z.number().int().min(0),
  chunks: z.number().int().min(1),
  findings: z.array(z.string()),
});
export type AnalyzeCheckpoint = z.infer<typeof resumeSchema>;

const SYSTEM =
  'You analyze a long document one part at a time. For the part you are given, report its findings: ' +
  'key facts, issues and anything notable. Be concise.';

export const analyze = defineTask({
  type: 'analyze',
  // Loadable in isolation: an operator may run it `worker` / `process` (a real kill).
  module: import.meta.url,
  // Its model call needs the provider settings if an operator runs it isolated.
  env: MODEL_ENV,
  description: 'Analyze a long document chunk by chunk, then summarize the findings.',
  input: analyzeInput,
  deadlineMs: 30 * 60_000,
  resume: true,
  async run(input, ctx): Promise<AnalyzeResult> {
    const model = ctx.models.resolve(input.model);
    const chunks = splitChunks(input.document, input.chunk_size ?? DEFAULT_CHUNK_SIZE);
    const n = chunks.length;
    const instructions = input.instructions?.trim() ? `Instructions: ${input.instructions.trim()}\n` : '';
    const findings: string[] = [];
    let start = 0;

    const saved = resumeFrom(ctx, n);
    if (saved) {
      findings.push(...saved.findings);
      start = saved.done;
    }

    for (let i = start; i < n; i++) {
      ctx.signal.throwIfAborted();
      ctx.progress(percent(i, n), `chunk ${i + 1}/${n}`);
      ctx.emit(`## Part ${i + 1}/${n}\n\n`);
      const user = `Analyze this part (${i + 1} of ${n}) of the document.\n${instructions}\n---\n${chunks[i]}`;
      const finding = await ask(model, ctx, [
        { role: 'system', content: SYSTEM },
        { role: 'user', content: user },
      ]);
      ctx.emit('\n\n');
      findings.push(finding);
      ctx.signal.throwIfAborted();
      await ctx.checkpoint({ done: i + 1, chunks: n, findings: [...findings] } satisfies AnalyzeCheckpoint);
    }

    ctx.signal.throwIfAborted();
    ctx.progress(percent(n, n), 'summary');
    ctx.emit('## Summary\n\n');
    const listed = findings.map((f, i) => `Part ${i + 1}: ${f}`).join('\n\n');
    const summary = await ask(model, ctx, [
      { role: 'system', content: SYSTEM },
      {
        role: 'user',
        content: `Summarize the findings below, from the ${n} parts of one document, into an overall analysis.\n${instructions}\n${listed}`,
      },
    ]);
    ctx.signal.throwIfAborted();
    ctx.progress(100, 'done');
    return { chunks: n, findings, summary };
  },
});

/** One model call, streamed to the task's output; the finding is the trimmed answer. */
async function ask(model: Model, ctx: TaskContext, messages: ChatMessage[]): Promise<string> {
  const out = await collectStream(model, { messages, abortSignal: ctx.signal }, (text) => ctx.emit(text));
  return out.text.trim();
}

/** Chunks done out of n, plus one step for the summary. */
const percent = (done: number, n: number): number => Math.floor((done / (n + 1)) * 100);

/** The checkpoint of an earlier attempt, if it matches this split; otherwise start over. */
function resumeFrom(ctx: TaskContext, n: number): AnalyzeCheckpoint | null {
  if (ctx.resumeState === null || ctx.resumeState === undefined) return null;
  const parsed = resumeSchema.safeParse(ctx.resumeState);
  if (
    !parsed.success ||
    parsed.data.chunks !== n ||
    parsed.data.done > n ||
    parsed.data.findings.length !== parsed.data.done
  ) {
    ctx.log.warn(
      { taskId: ctx.taskId },
      'analyze: ignoring a checkpoint that does not match this document; starting over',
    );
    return null;
  }
  return parsed.data;
}

/**
 * Splits `doc` into chunks of at most `size` characters, cutting after a newline
 * where possible; a line longer than `size` is cut at its last whitespace in the
 * window (or hard at `size`). The chunks concatenate back to `doc` exactly.
 */
export function splitChunks(doc: string, size: number): string[] {
  if (!(size >= 1)) throw new RangeError('chunk size must be >= 1');
  const chunks: string[] = [];
  let current = '';
  for (const line of doc.match(/[^\n]*\n|[^\n]+$/g) ?? []) {
    if (current.length + line.length <= size) {
      current += line;
      continue;
    }
    if (current !== '') chunks.push(current);
    current = '';
    let rest = line;
    while (rest.length > size) {
      const cut = cutPoint(rest, size);
      chunks.push(rest.slice(0, cut));
      rest = rest.slice(cut);
    }
    current = rest;
  }
  if (current !== '') chunks.push(current);
  return chunks;
}

/** Where to cut a too-long line: after its last whitespace in the window's second half, else at `size`. */
function cutPoint(text: string, size: number): number {
  for (let i = size; i > size / 2; i--) {
    if (/\s/.test(text[i - 1]!)) return i;
  }
  // Never split a surrogate pair.
  const code = text.charCodeAt(size - 1);
  return code >= 0xd800 && code <= 0xdbff && size > 1 ? size - 1 : size;
}
