// What the WebSocket API is built from and its per-socket limits.

import type { Runtime } from '../../runtime/runtime.ts';
import type { Threads } from '../../threads/threads.ts';
import type { RateCounter } from '../rate-limit.ts';
import type { StreamCaps } from '../stream-caps.ts';

export const DEFAULT_WS_MAX_PAYLOAD = 1024 * 1024;
export const DEFAULT_WS_MAX_BUFFERED = 4 * 1024 * 1024;
export const DEFAULT_WS_HEARTBEAT_MS = 30_000;
export const DEFAULT_WS_MAX_SUBSCRIPTIONS = 256;

export const WS_CLOSE_GOING_AWAY = 1001;
export const WS_CLOSE_TOO_BIG = 1009;
export const WS_CLOSE_TRY_AGAIN_LATER = 1013;

export interface WebSocketDeps {
  runtime: Runtime;
  threads: Threads;
  /** Aborts when the server closes: every socket is closed with 1001. */
  closing: AbortSignal;
  /** Per-owner cap on open streams; a socket holds one slot. */
  streams: StreamCaps;
  /** The per-owner request budget (LEASH_RATE_LIMIT), which every frame also spends; null = no limit. */
  rateCounter: RateCounter | null;
}

export interface WebSocketOptions {
  /** Largest accepted frame in bytes; a larger one closes the socket with 1009. */
  maxPayload?: number;
  /** Outgoing bytes a socket may have waiting; past it the socket is closed with 1013. */
  maxBufferedBytes?: number;
  /** Protocol-level ping interval (ms). */
  heartbeatMs?: number;
  /** Tasks one socket may follow at once. */
  maxSubscriptions?: number;
}
