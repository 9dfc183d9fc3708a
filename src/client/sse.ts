// A Server-Sent Events parser over a fetch body (WHATWG rules: LF, CRLF or CR
// line ends, `field: value` with one optional space, several `data` lines joined
// by "\n", comments ignored). EventSource is not used: it cannot send an
// Authorization header, and fetch works the same in browsers and Node.

export interface SseFrame {
  /** `id:` of the frame, null when it had none. */
  id: string | null;
  event: string;
  data: string;
  /** `retry:` in ms, when the frame set one. */
  retry?: number;
}

/** Yields frames as they complete; ends when the body ends. Cancelling the iteration cancels the body. */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseFrame> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let id: string | null = null;
  let event = '';
  let data: string[] = [];
  let retry: number | undefined;
  let sawCr = false;

  const line = (l: string): SseFrame | null => {
    if (l === '') {
      const frame: SseFrame | null =
        data.length === 0
          ? null
          : { id, event: event || 'message', data: data.join('\n'), ...(retry !== undefined && { retry }) };
      id = null;
      event = '';
      data = [];
      retry = undefined;
      return frame;
    }
    if (l.startsWith(':')) return null;
    const colon = l.indexOf(':');
    const field = colon === -1 ? l : l.slice(0, colon);
    let value = colon === -1 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
    return null;
  };

  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let chunk = decoder.decode(value, { stream: true });
      // A CRLF split across chunks: the LF was already counted with the CR.
      if (sawCr && chunk.startsWith('\n')) chunk = chunk.slice(1);
      sawCr = chunk.endsWith('\r');
      buf += chunk;
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        const frame = line(buf.slice(start, i));
        if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
        start = i + 1;
        if (frame !== null) yield frame;
      }
      buf = buf.slice(start);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
