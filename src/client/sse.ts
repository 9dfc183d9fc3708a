// Server-Sent Events over a fetch body, parsed by `eventsource-parser` (the parser the
// AI SDK uses: WHATWG line ends, multi-line data, comments, BOM). EventSource itself is
// not used: it cannot send an Authorization header, and fetch works the same in
// browsers and Node.

import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface SseFrame {
  /** `id:` of this frame, null when it had none (leash puts the event's seq on every frame). */
  id: string | null;
  event: string;
  data: string;
  /** `retry:` in ms, when the stream set one since the previous frame. */
  retry?: number;
}

/** Yields frames as they complete; ends when the body ends. Cancelling the iteration cancels the body. */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseFrame> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const ready: SseFrame[] = [];
  let retry: number | undefined;
  let endsWithCr = false;
  const parser = createParser({
    onEvent(m: EventSourceMessage) {
      ready.push({
        id: m.id ?? null,
        event: m.event ?? 'message',
        data: m.data,
        ...(retry !== undefined && { retry }),
      });
      retry = undefined;
    },
    onRetry(ms: number) {
      retry = ms;
    },
  });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        // A final CR ends its line, but the parser holds it back to see whether an LF
        // follows: give it that LF (an incomplete last event is still dropped).
        if (endsWithCr) parser.feed('\n');
      } else {
        const text = decoder.decode(value, { stream: true });
        if (text !== '') endsWithCr = text.endsWith('\r');
        parser.feed(text);
      }
      while (ready.length > 0) yield ready.shift()!;
      if (done) break;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
