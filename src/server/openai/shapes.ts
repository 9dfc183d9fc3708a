// The OpenAI wire objects leash answers with, built from tasks. Only the fields a
// text-only server can fill honestly; the tests assign these to the `openai`
// package's own types, so a drift from the official shapes fails to compile.

import type { Usage } from '../../models/model.ts';
import type { TaskStatus } from '../../core/types.ts';

/** ISO-8601 → Unix seconds, as every OpenAI timestamp is. */
export const unixSeconds = (iso: string): number => Math.floor(Date.parse(iso) / 1000);

// ── models ─────────────────────────────────────────────────────────────────
export interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

export const modelObject = (id: string, ownedBy: string, created: number): ModelObject => ({
  id,
  object: 'model',
  created,
  owned_by: ownedBy,
});

// ── chat completions ───────────────────────────────────────────────────────
export type FinishReason = 'stop' | 'length';

export interface CompletionUsageShape {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export const completionUsage = (u: Usage): CompletionUsageShape => ({
  prompt_tokens: u.input_tokens,
  completion_tokens: u.output_tokens,
  total_tokens: u.input_tokens + u.output_tokens,
});

export interface ChatCompletionShape {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string; refusal: null };
    logprobs: null;
    finish_reason: FinishReason;
  }>;
  usage: CompletionUsageShape;
}

export interface ChatChunkShape {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: 'assistant'; content?: string };
    logprobs: null;
    finish_reason: FinishReason | null;
  }>;
  /** Present (null until the last chunk) only when the client asked for usage. */
  usage?: CompletionUsageShape | null;
}

export interface CompletionHead {
  id: string;
  created: number;
  model: string;
}

export function chatCompletion(
  head: CompletionHead,
  text: string,
  finishReason: FinishReason,
  usage: Usage,
): ChatCompletionShape {
  return {
    ...head,
    object: 'chat.completion',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text, refusal: null },
        logprobs: null,
        finish_reason: finishReason,
      },
    ],
    usage: completionUsage(usage),
  };
}

export function chatChunk(
  head: CompletionHead,
  delta: ChatChunkShape['choices'][number]['delta'],
  finishReason: FinishReason | null,
  withUsage: boolean,
): ChatChunkShape {
  return {
    ...head,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(withUsage && { usage: null }),
  };
}

/** The extra last chunk of `stream_options.include_usage`: no choices, the usage. */
export const usageChunk = (head: CompletionHead, usage: Usage): ChatChunkShape => ({
  ...head,
  object: 'chat.completion.chunk',
  choices: [],
  usage: completionUsage(usage),
});

// ── responses ──────────────────────────────────────────────────────────────
export type ResponseStatus = 'queued' | 'in_progress' | 'completed' | 'failed' | 'cancelled' | 'incomplete';

/** Task status → Response status: a task that is stopping is still in progress. */
export function responseStatusOf(s: TaskStatus): ResponseStatus {
  switch (s) {
    case 'queued':
      return 'queued';
    case 'running':
    case 'cancelling':
      return 'in_progress';
    case 'completed':
      return 'completed';
    case 'failed':
      return 'failed';
    case 'cancelled':
      return 'cancelled';
  }
}

/** What does not change over a response's life. */
export interface ResponseInfo {
  /** The task id. */
  id: string;
  created_at: number;
  model: string;
  instructions: string | null;
  previous_response_id: string | null;
  /** The output message item's id (the assistant message of the thread). */
  item_id: string;
  /** Known when the response is created; not stored with the task, so null afterwards. */
  background: boolean | null;
}

export interface OutputTextShape {
  type: 'output_text';
  text: string;
  annotations: never[];
  logprobs: never[];
}

export interface OutputMessageShape {
  id: string;
  type: 'message';
  role: 'assistant';
  status: 'in_progress' | 'completed' | 'incomplete';
  content: OutputTextShape[];
}

export interface ResponseUsageShape {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export interface ResponseShape {
  id: string;
  object: 'response';
  created_at: number;
  status: ResponseStatus;
  background: boolean | null;
  completed_at: number | null;
  error: { code: string; message: string } | null;
  incomplete_details: null;
  instructions: string | null;
  max_output_tokens: null;
  metadata: Record<string, string>;
  model: string;
  output: OutputMessageShape[];
  parallel_tool_calls: boolean;
  previous_response_id: string | null;
  store: boolean;
  temperature: number | null;
  text: { format: { type: 'text' } };
  tool_choice: 'auto';
  tools: never[];
  top_p: number | null;
  truncation: 'disabled';
  usage: ResponseUsageShape | null;
}

export const outputText = (text: string): OutputTextShape => ({
  type: 'output_text',
  text,
  annotations: [],
  logprobs: [],
});

export function outputMessage(
  id: string,
  status: OutputMessageShape['status'],
  text: string | null,
): OutputMessageShape {
  return { id, type: 'message', role: 'assistant', status, content: text === null ? [] : [outputText(text)] };
}

export const responseUsage = (u: Usage): ResponseUsageShape => ({
  input_tokens: u.input_tokens,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: u.output_tokens,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: u.input_tokens + u.output_tokens,
});

export interface ResponseState {
  status: ResponseStatus;
  text: string;
  usage: Usage | null;
  error: { code: string; message: string } | null;
  completed_at: number | null;
}

/**
 * A response as a client sees it. The output message is there once there is text
 * (or the response completed, possibly with empty text); it is `incomplete` when
 * the response was cancelled or failed part-way.
 */
export function responseObject(info: ResponseInfo, state: ResponseState): ResponseShape {
  const { status, text } = state;
  const itemStatus: OutputMessageShape['status'] =
    status === 'completed'
      ? 'completed'
      : status === 'queued' || status === 'in_progress'
        ? 'in_progress'
        : 'incomplete';
  const output = status === 'completed' || text !== '' ? [outputMessage(info.item_id, itemStatus, text)] : [];
  return {
    id: info.id,
    object: 'response',
    created_at: info.created_at,
    status,
    background: info.background,
    completed_at: state.completed_at,
    error: state.error,
    incomplete_details: null,
    instructions: info.instructions,
    max_output_tokens: null,
    metadata: {},
    model: info.model,
    output,
    parallel_tool_calls: true,
    previous_response_id: info.previous_response_id,
    store: true,
    temperature: null,
    text: { format: { type: 'text' } },
    tool_choice: 'auto',
    tools: [],
    top_p: null,
    truncation: 'disabled',
    usage: state.usage === null ? null : responseUsage(state.usage),
  };
}
