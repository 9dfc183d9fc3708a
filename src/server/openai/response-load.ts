// A Response is a `chat` task (its id is the task id) plus the thread it ran in.
// Everything a client sees is derived from those two, so a response reads the same
// from any node and after a restart: nothing about it lives only in memory.

import type { Usage } from '../../models/model.ts';
import type { Runtime } from '../../runtime/runtime.ts';
import type { Task } from '../../core/types.ts';
import type { Message } from '../../store/store.ts';
import type { ResponseInfo, ResponseShape, ResponseState } from './shapes.ts';
import { responseObject, responseStatusOf, unixSeconds } from './shapes.ts';

interface ChatInput {
  assistant_message_id: string;
  model?: string;
  system?: string;
}

interface ChatResult {
  text?: string;
  model?: string;
  usage?: Usage;
}

export interface LoadedResponse {
  task: Task;
  info: ResponseInfo;
  messages: Message[];
  response: ResponseShape;
}

/**
 * The response before this one in its conversation: the task of the nearest
 * earlier answer. Input messages added by a request carry no task and are skipped;
 * a forked conversation's copied messages keep their original task ids.
 */
export function previousResponseId(taskId: string, messages: Message[]): string | null {
  const own = messages.findIndex((m) => m.task_id === taskId);
  for (let i = (own < 0 ? messages.length : own) - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role === 'assistant' && m.task_id !== null && m.task_id !== taskId) return m.task_id;
  }
  return null;
}

export function responseInfo(
  runtime: Runtime,
  task: Task,
  messages: Message[],
  background: boolean | null,
): ResponseInfo {
  const input = task.input as ChatInput;
  const result = task.result as ChatResult | null;
  return {
    id: task.id,
    created_at: unixSeconds(task.created_at),
    model: result?.model ?? input.model ?? runtime.models.defaultModel,
    instructions: input.system ?? null,
    previous_response_id: previousResponseId(task.id, messages),
    item_id: input.assistant_message_id,
    background,
  };
}

export function responseState(task: Task, messages: Message[]): ResponseState {
  const status = responseStatusOf(task.status);
  const result = task.result as ChatResult | null;
  const answer = messages.find((m) => m.id === (task.input as ChatInput).assistant_message_id);
  let usage: Usage | null = null;
  if (task.status === 'completed') usage = result?.usage ?? answer?.usage ?? null;
  else if (task.status === 'cancelled' || task.status === 'failed') usage = answer?.usage ?? null;
  return {
    status,
    text: task.status === 'completed' ? (result?.text ?? task.output_text) : task.output_text,
    usage,
    error: task.status === 'failed' && task.error ? { code: task.error.code, message: task.error.message } : null,
    completed_at: task.status === 'completed' && task.ended_at ? unixSeconds(task.ended_at) : null,
  };
}

/** Null when there is no such response for `owner` (missing, another owner's, or not a chat turn). */
export async function loadResponse(
  runtime: Runtime,
  id: string,
  owner: string,
  background: boolean | null = null,
): Promise<LoadedResponse | null> {
  const task = await runtime.get(id, owner);
  if (!task || task.type !== 'chat' || task.thread_id === null) return null;
  const { recent_progress: _, ...plain } = task;
  const messages = await runtime.store.listMessages(task.thread_id);
  const info = responseInfo(runtime, plain, messages, background);
  return { task: plain, info, messages, response: responseObject(info, responseState(plain, messages)) };
}
