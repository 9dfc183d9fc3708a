// Runs one model call to the end, handing each delta to `onDelta` as it arrives.
// Shared by the task types so they all count tokens and usage the same way.

import type { Model, ModelCallOptions, Usage } from './model.ts';

export interface CollectedStream {
  text: string;
  /** text-delta parts received. */
  deltas: number;
  finishReason: 'stop' | 'length' | 'abort' | 'error';
  usage: Usage;
}

/**
 * Streams `model` with `options` (the abort signal is passed through unchanged).
 * An abort or upstream error propagates as thrown by the model; a stream that ends
 * without a finish part counts its deltas as the output tokens.
 */
export async function collectStream(
  model: Model,
  options: ModelCallOptions,
  onDelta?: (text: string, deltas: number) => void,
): Promise<CollectedStream> {
  let text = '';
  let deltas = 0;
  let finish: { finishReason: CollectedStream['finishReason']; usage: Usage } | null = null;
  for await (const part of model.stream(options)) {
    if (part.type === 'text-delta') {
      if (part.text === '') continue;
      text += part.text;
      deltas++;
      onDelta?.(part.text, deltas);
    } else if (part.type === 'finish') {
      finish = { finishReason: part.finishReason, usage: part.usage };
    }
  }
  return {
    text,
    deltas,
    finishReason: finish?.finishReason ?? 'stop',
    usage: finish?.usage ?? { input_tokens: 0, output_tokens: deltas },
  };
}
