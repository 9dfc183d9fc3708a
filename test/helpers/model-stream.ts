// Reading a Model's stream in tests: every part, the text deltas, and the finish part.

import type { Model, ModelCallOptions, ModelStreamPart } from '../../src/models/model.ts';

export interface Drained {
  parts: ModelStreamPart[];
  deltas: string[];
  /** The last part that is not a delta (the finish part, when the stream ended well). */
  finish: ModelStreamPart | undefined;
}

/** Reads the stream to its end; a stream that throws rejects (the parts read so far are lost). */
export async function drain(model: Model, opts: ModelCallOptions): Promise<Drained> {
  const parts: ModelStreamPart[] = [];
  const deltas: string[] = [];
  let finish: ModelStreamPart | undefined;
  for await (const part of model.stream(opts)) {
    parts.push(part);
    if (part.type === 'text-delta') deltas.push(part.text);
    else finish = part;
  }
  return { parts, deltas, finish };
}
