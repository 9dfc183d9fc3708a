// The leash client SDK: `new LeashClient({ baseUrl, apiKey })`. Works in browsers and Node 24.

export { LeashClient, PagePromise, TasksApi, ThreadsApi } from './client.ts';
export type { FetchLike, LeashClientOptions, TaskStream } from './client.ts';
export {
  AuthError,
  ConflictError,
  LeashApiError,
  LeashConnectionError,
  NotFoundError,
  RateLimitError,
  ServerError,
  ValidationError,
} from './errors.ts';
export type { ApiErrorInit } from './errors.ts';
export { parseSse } from './sse.ts';
export { LeashSocket, WS_SUBPROTOCOL } from './ws.ts';
export type { CancelAck, LeashSocketOptions, SocketRun } from './ws.ts';
export type { SseFrame } from './sse.ts';
export * from './types.ts';
