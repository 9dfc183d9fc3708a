// A `chat` task's event log → the Responses API stream events.
//
// `sequence_number` counts the Responses events from 0 in the order this translator
// emits them for the task's log replayed from seq 1. The translation is a pure
// function of the log, so replaying it always numbers the same event the same way:
// `GET /v1/responses/:id?stream=true&starting_after=N` replays the log from the start
// and drops events up to N — no duplicates, no gaps, whichever node answers.
// After a crash the log skips seqs (events the lost node streamed but never stored):
// the numbering skips too, by the most any skipped event could have produced (3), so
// a sequence_number a client saw before the crash never names a different event after.
//
//   task.queued      → response.created (queued), response.queued
//   task.started     → response.in_progress
//   first delta      → response.output_item.added, response.content_part.added
//   output.delta     → response.output_text.delta
//   task.completed   → (item opened if no text came) output_text.done,
//                      content_part.done, output_item.done (completed), response.completed
//   task.failed      → (open item closed `incomplete`) response.failed
//   task.cancelled   → (open item closed `incomplete`) response.cancelled
//
// OpenAI's stream has no event for a cancelled response; leash ends the stream with
// `response.cancelled` (named like OpenAI's webhook event and the status), whose
// `response` has status `cancelled` and the partial output.

import type { TaskEvent } from '../../core/types.ts';
import type { OutputMessageShape, ResponseInfo, ResponseShape } from './shapes.ts';
import { outputMessage, outputText, responseObject } from './shapes.ts';

export type ResponseStreamEventShape = { type: string; sequence_number: number } & Record<string, unknown>;

export class ResponseEventTranslator {
  readonly #info: ResponseInfo;
  /** The final response, read once the task has ended (its stored state no longer changes). */
  readonly #final: () => Promise<ResponseShape>;
  #seq = -1;
  #taskSeq = 0;
  #text = '';
  #itemOpen = false;
  #ended = false;

  constructor(info: ResponseInfo, final: () => Promise<ResponseShape>) {
    this.#info = info;
    this.#final = final;
  }

  get ended(): boolean {
    return this.#ended;
  }

  async translate(e: TaskEvent): Promise<ResponseStreamEventShape[]> {
    const out: ResponseStreamEventShape[] = [];
    const push = (type: string, body: Record<string, unknown>): void => {
      out.push({ type, ...body, sequence_number: ++this.#seq });
    };
    const snapshot = (status: 'queued' | 'in_progress'): ResponseShape =>
      responseObject(this.#info, { status, text: '', usage: null, error: null, completed_at: null });
    const item = { item_id: this.#info.item_id, output_index: 0, content_index: 0 };
    const open = (): void => {
      if (this.#itemOpen) return;
      this.#itemOpen = true;
      push('response.output_item.added', {
        output_index: 0,
        item: outputMessage(this.#info.item_id, 'in_progress', null),
      });
      push('response.content_part.added', { ...item, part: outputText('') });
    };
    const close = (status: OutputMessageShape['status']): void => {
      if (!this.#itemOpen) return;
      this.#itemOpen = false;
      push('response.output_text.done', { ...item, text: this.#text, logprobs: [] });
      push('response.content_part.done', { ...item, part: outputText(this.#text) });
      push('response.output_item.done', {
        output_index: 0,
        item: outputMessage(this.#info.item_id, status, this.#text),
      });
    };

    if (this.#ended) return out;
    // A non-terminal task event yields at most 3 Responses events (first delta: item and part added, delta).
    if (e.seq > this.#taskSeq + 1) this.#seq += 3 * (e.seq - this.#taskSeq - 1);
    this.#taskSeq = Math.max(this.#taskSeq, e.seq);
    switch (e.type) {
      case 'task.queued':
        push('response.created', { response: snapshot('queued') });
        push('response.queued', { response: snapshot('queued') });
        break;
      case 'task.started':
        push('response.in_progress', { response: snapshot('in_progress') });
        break;
      case 'output.delta':
        open();
        this.#text += e.data.text;
        push('response.output_text.delta', { ...item, delta: e.data.text, logprobs: [] });
        break;
      case 'task.completed':
        open();
        close('completed');
        this.#ended = true;
        push('response.completed', { response: await this.#final() });
        break;
      case 'task.failed':
        close('incomplete');
        this.#ended = true;
        push('response.failed', { response: await this.#final() });
        break;
      case 'task.cancelled':
        close('incomplete');
        this.#ended = true;
        push('response.cancelled', { response: await this.#final() });
        break;
      default:
        // progress and cancelling have no Responses counterpart
        break;
    }
    return out;
  }
}
