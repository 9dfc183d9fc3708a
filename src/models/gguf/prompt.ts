// The prompt and the answer's text. The prompt is the model's chat template when the
// file has one (node-llama-cpp's chat wrappers render it), else a plain `role: content`
// transcript; the answer is decoded a token at a time and cut at the first stop text.

import type { ChatHistoryItem, LlamaModel, Token } from 'node-llama-cpp';
import type { ChatMessage } from '../model.ts';
import type { Nlc } from './loaded-models.ts';

/** Tokens decoded together at most while waiting for the rest of a UTF-8 character. */
const MAX_PENDING_TOKENS = 4;

export interface GgufPrompt {
  tokens: Token[];
  /** Tokens that end the answer besides the model's end-of-generation tokens. */
  stopTokens: Set<Token>;
  /** Texts that end the answer (not included in it), e.g. the next turn's header. */
  stopTexts: string[];
  /** How it was formatted: the chat wrapper's name (from the chat template), or `transcript`. */
  format: string;
}

/** `role: content` per message and an open `assistant:` turn. */
export function transcriptPrompt(messages: ChatMessage[]): string {
  return [...messages.map((m) => `${m.role}: ${m.content}`), 'assistant:'].join('\n');
}

export function buildPrompt(nlc: Nlc, model: LlamaModel, messages: ChatMessage[]): GgufPrompt {
  const template = model.fileInfo.metadata?.tokenizer?.chat_template;
  const wrapper =
    typeof template === 'string' && template.trim() !== ''
      ? nlc.resolveChatWrapper(model, { warningLogs: false })
      : null;
  if (wrapper) {
    const history: ChatHistoryItem[] = messages.map((m) =>
      m.role === 'assistant' ? { type: 'model', response: [m.content] } : { type: m.role, text: m.content },
    );
    history.push({ type: 'model', response: [] });
    const state = wrapper.generateContextState({ chatHistory: history });
    const stopTokens = new Set<Token>();
    const stopTexts: string[] = [];
    for (const trigger of state.stopGenerationTriggers) {
      if (trigger.values.some((v) => v instanceof nlc.SpecialToken)) {
        // EOS, EOT…: one token each.
        const t = trigger.tokenize(model.tokenizer);
        if (t.length === 1) stopTokens.add(t[0]!);
        continue;
      }
      const text = trigger.values.map((v) => (typeof v === 'string' ? v : v.value)).join('');
      if (text === '') continue;
      // `<|im_end|>` and the like are single special tokens, which detokenize to ''.
      const t = model.tokenize(text, true, 'trimLeadingSpace');
      if (t.length === 1) stopTokens.add(t[0]!);
      stopTexts.push(text);
    }
    return { tokens: state.contextText.tokenize(model.tokenizer), stopTokens, stopTexts, format: wrapper.wrapperName };
  }
  const tokens = model.tokenize(transcriptPrompt(messages), false);
  const bos = model.tokens.bos;
  if (bos !== null && model.tokens.shouldPrependBosToken) tokens.unshift(bos);
  return {
    tokens,
    stopTokens: new Set(),
    stopTexts: ['\nuser:', '\nsystem:', '\nassistant:'],
    format: 'transcript',
  };
}

/**
 * Tokens to text, one token at a time. A character split over several tokens (byte
 * tokens) decodes to U+FFFD until its last byte arrives, so such tokens wait, up to
 * MAX_PENDING_TOKENS. The tokens before give the detokenizer its spacing context.
 */
export class StreamDetokenizer {
  private pending: Token[] = [];
  private context: Token[];
  private readonly model: Pick<LlamaModel, 'detokenize'>;

  constructor(model: Pick<LlamaModel, 'detokenize'>, preceding: readonly Token[]) {
    this.model = model;
    this.context = preceding.slice(-8);
  }

  /** The text the token completes ('' while a character is incomplete). */
  push(token: Token): string {
    this.pending.push(token);
    const text = this.model.detokenize(this.pending, false, this.context);
    if (text.endsWith('\uFFFD') && this.pending.length < MAX_PENDING_TOKENS) return '';
    this.context = [...this.context, ...this.pending].slice(-8);
    this.pending = [];
    return text;
  }

  /** Whatever is still waiting, decoded as it is. */
  flush(): string {
    if (this.pending.length === 0) return '';
    const text = this.model.detokenize(this.pending, false, this.context);
    this.context = [...this.context, ...this.pending].slice(-8);
    this.pending = [];
    return text;
  }
}

/**
 * The answer text between the detokenizer and the stream: drops its leading whitespace,
 * holds back an end that may be the start of a stop text until the next text decides,
 * and cuts the answer at the first stop text (which is not sent).
 */
export class AnswerFilter {
  private held = '';
  private started = false;
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s !== '');
  }

  /** The text that can be sent now; `stop` once a stop text was reached. */
  push(text: string): { text: string; stop: boolean } {
    this.held += text;
    if (!this.started) {
      this.held = this.held.trimStart();
      this.started = this.held !== '';
    }
    let at = -1;
    for (const s of this.stops) {
      const i = this.held.indexOf(s);
      if (i !== -1 && (at === -1 || i < at)) at = i;
    }
    if (at !== -1) {
      const out = this.held.slice(0, at);
      this.held = '';
      return { text: out, stop: true };
    }
    const keep = this.partialStopLength();
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return { text: out, stop: false };
  }

  /** At the end of the answer: what was held back. */
  flush(): string {
    const out = this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest end of the held text that starts a stop text. */
  private partialStopLength(): number {
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.held.length); k > keep; k--) {
        if (this.held.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    return keep;
  }
}
