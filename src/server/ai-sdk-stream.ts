// A task's event log as the Vercel AI SDK's UI message stream (SPEC §7), the wire
// format `useChat` reads: `data: <UIMessageChunk JSON>` frames, `[DONE]` at the end.
//
// The log is always read from seq 1, so the translator knows whether a text part or
// a step is open, but only events after `after` (Last-Event-ID) are written: a
// resumed connection continues the same message where the last one stopped
// (no second `start`, no second `text-start`, no text twice). With no
// Last-Event-ID the whole answer is replayed from `start`, which is what a
// reloaded `useChat` needs (its resumed message starts empty).
//
// Every frame that ends an event's group carries `id: <seq>`, so Last-Event-ID
// always names a whole event. Leash's own events become transient `data-leash-*`
// parts (onData sees them; they are not kept in the message).

import type { Task, TaskEvent } from '../core/types.ts';
import { isTerminalEvent } from '../core/types.ts';

export const AI_SDK_STREAM_HEADERS: Readonly<Record<string, string>> = {
  'x-vercel-ai-ui-message-stream': 'v1',
};

/** The message id useChat gets: the chat turn's assistant message when the task has one. */
export function aiSdkMessageId(task: Task): string {
  const input = task.input as { assistant_message_id?: unknown } | null;
  const id = input !== null && typeof input === 'object' ? input.assistant_message_id : undefined;
  return typeof id === 'string' && id !== '' ? id : task.id;
}

type Chunk = Record<string, unknown> & { type: string };

/** Turns one task's events into UI message stream chunks, keeping the open text part and step. */
export class AiSdkTranslator {
  readonly #taskId: string;
  readonly #messageId: string;
  readonly #textId: string;
  #started = false;
  #stepOpen = false;
  #textOpen = false;

  constructor(taskId: string, messageId: string) {
    this.#taskId = taskId;
    this.#messageId = messageId;
    this.#textId = `text_${taskId}`;
  }

  /** The chunks for one event, in order (the first event also opens the message). */
  chunks(e: TaskEvent): Chunk[] {
    const out: Chunk[] = [];
    if (!this.#started) {
      this.#started = true;
      out.push({ type: 'start', messageId: this.#messageId, messageMetadata: { taskId: this.#taskId } });
    }
    const status = (data: Record<string, unknown>): Chunk => ({ type: 'data-leash-status', data, transient: true });
    switch (e.type) {
      case 'task.queued':
        out.push(status({ taskId: this.#taskId, status: 'queued' }));
        break;
      case 'task.started':
        this.#openStep(out);
        out.push(status({ taskId: this.#taskId, status: 'running', ...e.data }));
        break;
      case 'task.progress':
        out.push({ type: 'data-leash-progress', data: { taskId: this.#taskId, ...e.data }, transient: true });
        break;
      case 'output.delta':
        if (e.data.text === '') break;
        this.#openStep(out);
        if (!this.#textOpen) {
          this.#textOpen = true;
          out.push({ type: 'text-start', id: this.#textId });
        }
        out.push({ type: 'text-delta', id: this.#textId, delta: e.data.text });
        break;
      case 'task.cancelling':
        out.push(status({ taskId: this.#taskId, status: 'cancelling', reason: e.data.reason }));
        break;
      case 'task.completed':
        this.#close(out);
        out.push({
          type: 'finish',
          finishReason: 'stop',
          messageMetadata: { taskId: this.#taskId, status: 'completed' },
        });
        break;
      case 'task.failed':
        this.#close(out);
        out.push({
          type: 'message-metadata',
          messageMetadata: { taskId: this.#taskId, status: 'failed', error: e.data.error },
        });
        out.push({ type: 'error', errorText: `${e.data.error.code}: ${e.data.error.message}` });
        break;
      case 'task.cancelled':
        this.#close(out);
        out.push({
          type: 'message-metadata',
          messageMetadata: { taskId: this.#taskId, status: 'cancelled', stopped: true, cancelReason: e.data.reason },
        });
        out.push({ type: 'abort', reason: e.data.reason });
        break;
      default: {
        // An event type this translator does not know (a newer server): passed on as data, never as a chunk type
        // outside the AI SDK's schema (that would put the chat in its error state).
        const other = e as unknown as { type: string; data: unknown };
        const name = String(other.type).replace(/[^a-zA-Z0-9_-]/g, '-');
        out.push({ type: `data-leash-${name}`, data: { taskId: this.#taskId, data: other.data }, transient: true });
      }
    }
    return out;
  }

  #openStep(out: Chunk[]): void {
    if (this.#stepOpen) return;
    this.#stepOpen = true;
    out.push({ type: 'start-step' });
  }

  #close(out: Chunk[]): void {
    if (this.#textOpen) out.push({ type: 'text-end', id: this.#textId });
    if (this.#stepOpen) out.push({ type: 'finish-step' });
    this.#textOpen = false;
    this.#stepOpen = false;
  }
}

/** `data:` frames of one event; the last carries `id: <seq>` so Last-Event-ID names a whole event. */
export function formatAiSdkFrames(seq: number, chunks: readonly Chunk[]): string {
  let s = '';
  chunks.forEach((c, i) => {
    s += `${i === chunks.length - 1 ? `id: ${seq}\n` : ''}data: ${JSON.stringify(c)}\n\n`;
  });
  return s;
}

export const DONE_FRAME = 'data: [DONE]\n\n';

/**
 * The frames to write for events after `after`, given the task's whole log from seq 1
 * (`events`). Ends after the terminal event with `[DONE]`.
 */
export async function* aiSdkFrames(
  events: AsyncIterable<TaskEvent>,
  task: Task,
  after: number,
): AsyncGenerator<string> {
  const t = new AiSdkTranslator(task.id, aiSdkMessageId(task));
  for await (const e of events) {
    const chunks = t.chunks(e);
    const terminal = isTerminalEvent(e);
    let frames = e.seq > after && chunks.length > 0 ? formatAiSdkFrames(e.seq, chunks) : '';
    if (terminal) frames += DONE_FRAME;
    if (frames !== '') yield frames;
    if (terminal) return;
  }
}
