// parseSse over awkward chunking: line ends of every kind split anywhere, multi-line
// data, comments, ids per frame, retry.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseSse, type SseFrame } from '../src/client/sse.ts';

async function frames(chunks: string[]): Promise<SseFrame[]> {
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
  const out: SseFrame[] = [];
  for await (const f of parseSse(body)) out.push(f);
  return out;
}

describe('parseSse', () => {
  const text =
    ': hello\r\nid: 1\r\nevent: task.queued\r\ndata: {"a":1}\r\n\r\nretry: 3000\ndata: x\ndata: y\n\nid: 3\rdata: z\r\r';
  const expected: SseFrame[] = [
    { id: '1', event: 'task.queued', data: '{"a":1}' },
    { id: null, event: 'message', data: 'x\ny', retry: 3000 },
    { id: '3', event: 'message', data: 'z' },
  ];

  it('whole, and split at every position (CRLF halves included)', async () => {
    assert.deepEqual(await frames([text]), expected);
    for (let i = 1; i < text.length; i++) {
      assert.deepEqual(await frames([text.slice(0, i), text.slice(i)]), expected, `split at ${i}`);
    }
    assert.deepEqual(await frames([...text]), expected, 'one character at a time');
  });

  it('a frame without data is no frame; an unfinished last frame is dropped', async () => {
    assert.deepEqual(await frames(['id: 9\n\n', 'data: never ended']), []);
    assert.deepEqual(await frames(['data: no blank line after\n']), []);
    assert.deepEqual(await frames(['data: ended by CR\r', '\r']), [
      { id: null, event: 'message', data: 'ended by CR' },
    ]);
  });
});
