// A WebSocket frame's text to a JSON object, with the same bounds as HTTP bodies.
// Every refusal is an `invalid_frame` error that the session answers in order.

import type { RawData } from 'ws';
import { LeashError } from '../../core/errors.ts';
import { MAX_JSON_DEPTH, jsonDepthExceeds } from '../json-depth.ts';

/** Frames up to this size are looked at on arrival (a `run`'s request_id, an early `cancel`). */
const PEEK_MAX_BYTES = 16 * 1024;

export type FrameRecord = Record<string, unknown>;

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** The frame as a JSON object, or the `invalid_frame` error that answers it. */
export function decodeFrame(data: RawData, isBinary: boolean): FrameRecord | LeashError {
  if (isBinary) return new LeashError('invalid_frame', 'Binary frames are not supported: send JSON text frames.');
  const text = toBuffer(data).toString('utf8');
  // Same bound as HTTP bodies: what comes after parsing recurses and would overflow.
  if (jsonDepthExceeds(text)) {
    return new LeashError('invalid_frame', `The frame nests deeper than ${MAX_JSON_DEPTH} levels.`);
  }
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return new LeashError('invalid_frame', 'The frame is not valid JSON.');
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    return new LeashError('invalid_frame', 'A frame must be a JSON object with a "type".');
  }
  return msg as FrameRecord;
}

/** A small text frame as a JSON object, for a look on arrival; null for anything else (left to the queue). */
export function peekFrame(data: RawData): FrameRecord | null {
  const buf = toBuffer(data);
  if (buf.length > PEEK_MAX_BYTES) return null;
  const f = decodeFrame(buf, false);
  return f instanceof LeashError ? null : f;
}
