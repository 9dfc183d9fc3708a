// The model seam. Every provider (simulated, openai-compatible, ollama, anthropic,
// gguf) streams text for a list of messages and stops at once when `abortSignal`
// fires: the signal is passed unchanged down to the socket or the token loop.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
}

/** Stream parts are a union keyed on `type`. */
export type ModelStreamPart =
  | { type: 'text-delta'; text: string }
  | { type: 'finish'; finishReason: 'stop' | 'length' | 'abort' | 'error'; usage: Usage };

export interface ModelCallOptions {
  messages: ChatMessage[];
  abortSignal?: AbortSignal;
  maxTokens?: number;
  temperature?: number;
}

export interface Model {
  /** The spec it was resolved from, e.g. `simulated`, `simulated:echo`, `openai:gpt-4o-mini`. */
  readonly id: string;
  stream(options: ModelCallOptions): AsyncIterable<ModelStreamPart>;
}

export interface ModelInfo {
  id: string;
  provider: string;
  description: string;
}

/**
 * A family of models under one spec prefix (`openai:`, `ollama:`, `anthropic:`, `gguf:`),
 * registered with the model registry (registry.ts) under that prefix.
 */
export interface ModelProvider {
  /** One line for `list()` and error messages, e.g. `OpenAI-compatible API at https://…`. */
  readonly description?: string;
  /** `name` is the spec without `<prefix>:`; `spec` the whole spec (the Model's id). */
  resolve(name: string, spec: string): Model;
  /** Models this provider knows it can serve (optional; providers may accept any name). */
  list?(): ModelInfo[];
}

/** Resolves a model spec; the default model is used when `spec` is absent. */
export interface ModelRegistry {
  readonly defaultModel: string;
  /** The allowlist's patterns (LEASH_MODELS), the default model's name among them. */
  readonly allowedModels: readonly string[];
  /** Throws 400 `model_not_allowed` unless callers may name `spec` (default: the default model). No I/O. */
  check(spec?: string): void;
  /** Checks the name against the allowlist first (as `check`), then builds the model. */
  resolve(spec?: string): Model;
  /** The models callers may name that can be listed (exact names; patterns are not). */
  list(): ModelInfo[];
}
