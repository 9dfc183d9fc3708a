// Requests sent exactly as written: `fetch` (the WHATWG URL parser) would resolve dot
// segments and re-encode the path before it left, hiding the spellings an attacker sends.

import { request } from 'node:http';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** True when the server switched protocols (a WebSocket was opened). */
  upgraded: boolean;
}

export function rawRequest(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers, agent: false });
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', upgraded: true });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      // Streams (SSE) are not read to their end: the status and first bytes tell enough.
      const done = (): void => {
        res.destroy();
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          upgraded: false,
        });
      };
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        if ((res.headers['content-type'] ?? '').includes('event-stream')) done();
      });
      res.on('end', done);
      res.on('error', done);
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** Headers of a WebSocket upgrade request (a valid handshake). */
export const WS_UPGRADE_HEADERS: Readonly<Record<string, string>> = {
  connection: 'Upgrade',
  upgrade: 'websocket',
  'sec-websocket-version': '13',
  'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
};
