// A fake Anthropic Messages API: a real node:http server speaking Anthropic's streaming
// format (named SSE events: message_start, content_block_*, ping, message_delta,
// message_stop, error), one text delta every `intervalMs`. It records each request and
// when its socket closed, and stops generating when the client leaves (as a real
// server does), so tests can prove that an abort closes the upstream call. The script
// can also make it fail: an HTTP error, a hang, a reset or an error event mid-answer,
// or a stream that is not JSON.

import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AnthropicScript {
  tokens: string[];
  intervalMs: number;
  inputTokens: number;
  outputTokens: number;
  stopReason: string;
  /** Send an `error` event (overloaded) after this many deltas, then end the response. */
  errorAfter?: number;
  /** Destroy the socket after this many deltas (the connection lost mid-answer). */
  resetAfter?: number;
  /** Answer this HTTP status with an Anthropic error body instead of a stream. */
  status?: number;
  /** Accept the request and never answer (not even the headers). */
  hang?: boolean;
  /** Answer 200 text/event-stream whose data lines are not JSON. */
  malformed?: boolean;
}

export interface AnthropicRequest {
  url: string;
  headers: IncomingHttpHeaders;
  body: unknown;
  deltasWritten: number;
  completed: boolean;
  /** Resolves with performance.now() when the response's socket closed. */
  socketClosed: Promise<number>;
}

export interface FakeAnthropic {
  /** `http://127.0.0.1:<port>/v1`, for ANTHROPIC_BASE_URL. */
  readonly base: string;
  /** The script the next requests follow; change it between calls. */
  script: AnthropicScript;
  readonly seen: AnthropicRequest[];
  close(): Promise<void>;
}

const event = (type: string, data: object): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

export async function startFakeAnthropic(script: AnthropicScript): Promise<FakeAnthropic> {
  const seen: AnthropicRequest[] = [];
  const fake: FakeAnthropic = { base: '', script, seen, close: async () => {} };
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      const s = fake.script;
      let onClose: (t: number) => void = () => {};
      const rec: AnthropicRequest = {
        url: req.url ?? '',
        headers: req.headers,
        body: JSON.parse(raw) as unknown,
        deltasWritten: 0,
        completed: false,
        socketClosed: new Promise<number>((r) => (onClose = r)),
      };
      seen.push(rec);
      req.socket.once('close', () => onClose(performance.now()));
      const model = (rec.body as { model?: string }).model ?? 'claude-fake';
      if (s.hang === true) return;
      if (s.status !== undefined) {
        res.writeHead(s.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'api_error', message: 'fake Anthropic exploded' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
      if (s.malformed === true) {
        res.end('event: message_start\ndata: {this is not json\n\n');
        return;
      }
      res.write(
        event('message_start', {
          message: {
            id: 'msg_fake01',
            type: 'message',
            role: 'assistant',
            model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: s.inputTokens, output_tokens: 1 },
          },
        }),
      );
      res.write(event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
      res.write(event('ping', {}));
      let i = 0;
      const tick = (): void => {
        if (res.destroyed) return; // a real server stops generating when the client leaves
        if (s.resetAfter !== undefined && i >= s.resetAfter) {
          req.socket.destroy();
          return;
        }
        if (s.errorAfter !== undefined && i >= s.errorAfter) {
          res.end(event('error', { error: { type: 'overloaded_error', message: 'Overloaded' } }));
          return;
        }
        if (i < s.tokens.length) {
          res.write(event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: s.tokens[i] } }));
          rec.deltasWritten = ++i;
          timer = setTimeout(tick, s.intervalMs);
          return;
        }
        res.write(event('content_block_stop', { index: 0 }));
        res.write(
          event('message_delta', {
            delta: { stop_reason: s.stopReason, stop_sequence: null },
            usage: { output_tokens: s.outputTokens },
          }),
        );
        res.end(event('message_stop', {}));
        rec.completed = true;
      };
      let timer = setTimeout(tick, s.intervalMs);
      res.on('close', () => clearTimeout(timer));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  Object.assign(fake, {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
  return fake;
}
