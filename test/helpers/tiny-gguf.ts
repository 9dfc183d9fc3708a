// Writes a tiny but valid GGUF v3 model (llama architecture, f32 tensors, random
// weights from a seeded PRNG, a SentencePiece-style "llama" vocab) so the `gguf:`
// provider runs for real in tests without downloading anything. The output is
// gibberish; what matters is that llama.cpp loads it and generates tokens.
//
// Format: ggml's docs/gguf.md. Header (magic "GGUF", version 3, tensor count,
// metadata count), metadata key/values, tensor infos (name, dims innermost-first,
// ggml type, offset into the data section), padding to `general.alignment`, data.

import { prng } from '../../src/models/simulated.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TinyGgufOptions {
  /** PRNG seed for the weights (default 1): the same seed writes the same bytes. */
  seed?: number;
  nEmbd?: number;
  nLayer?: number;
  nHead?: number;
  nFf?: number;
  contextLength?: number;
  /** Stored as `tokenizer.chat_template` when given (a Jinja template). */
  chatTemplate?: string;
}

// GGUF metadata value types.
const T_UINT32 = 4;
const T_INT32 = 5;
const T_FLOAT32 = 6;
const T_BOOL = 7;
const T_STRING = 8;
const T_ARRAY = 9;
// ggml tensor type.
const GGML_F32 = 0;
// llama.cpp token types.
const TOK_NORMAL = 1;
const TOK_UNKNOWN = 2;
const TOK_CONTROL = 3;
const TOK_BYTE = 6;

const ALIGNMENT = 32;

/** Word pieces after the byte tokens; `▁` marks a leading space (SentencePiece). */
const PIECES = [
  '▁',
  ...'abcdefghijklmnopqrstuvwxyz'.split(''),
  '▁the',
  '▁a',
  '▁of',
  '▁and',
  '▁to',
  '▁in',
  '▁is',
  '▁it',
  '▁hello',
  '▁world',
  '▁cat',
  '▁dog',
  '▁leash',
  '▁stop',
  '▁task',
  '▁model',
  'ing',
  'ed',
  'er',
  'an',
  'on',
  'th',
  'he',
  'in',
  'es',
];

/** The id of byte `b`'s token (`<0xBB>`) in the tiny vocab: after <unk>, <s>, </s>. */
export const tinyByteToken = (b: number): number => 3 + b;

interface Vocab {
  tokens: string[];
  scores: number[];
  types: number[];
}

function buildVocab(): Vocab {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [TOK_UNKNOWN, TOK_CONTROL, TOK_CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TOK_BYTE);
  }
  for (const p of PIECES) {
    tokens.push(p);
    types.push(TOK_NORMAL);
  }
  // SentencePiece scores: higher merges first; longer pieces win over their parts.
  const scores = tokens.map((t, i) => (types[i] === TOK_NORMAL ? -100 + [...t].length * 10 - i / 1000 : 0));
  return { tokens, scores, types };
}

class Writer {
  private chunks: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  pad(): void {
    const n = (ALIGNMENT - (this.size % ALIGNMENT)) % ALIGNMENT;
    if (n > 0) this.push(Buffer.alloc(n));
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

type MetaValue =
  | { t: 'u32'; v: number }
  | { t: 'f32'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'str'; v: string }
  | { t: 'str[]'; v: string[] }
  | { t: 'f32[]'; v: number[] }
  | { t: 'i32[]'; v: number[] };

function writeMeta(w: Writer, key: string, m: MetaValue): void {
  w.str(key);
  switch (m.t) {
    case 'u32':
      w.u32(T_UINT32);
      w.u32(m.v);
      break;
    case 'f32':
      w.u32(T_FLOAT32);
      w.f32(m.v);
      break;
    case 'bool':
      w.u32(T_BOOL);
      w.push(Buffer.from([m.v ? 1 : 0]));
      break;
    case 'str':
      w.u32(T_STRING);
      w.str(m.v);
      break;
    case 'str[]':
      w.u32(T_ARRAY);
      w.u32(T_STRING);
      w.u64(m.v.length);
      for (const s of m.v) w.str(s);
      break;
    case 'f32[]':
      w.u32(T_ARRAY);
      w.u32(T_FLOAT32);
      w.u64(m.v.length);
      for (const x of m.v) w.f32(x);
      break;
    case 'i32[]':
      w.u32(T_ARRAY);
      w.u32(T_INT32);
      w.u64(m.v.length);
      for (const x of m.v) w.i32(x);
      break;
  }
}

interface Tensor {
  name: string;
  /** ggml order: dims[0] is the row length. */
  dims: number[];
  data: Float32Array;
}

/** The bytes of a tiny llama GGUF model. */
export function tinyGguf(options: TinyGgufOptions = {}): Buffer {
  const nEmbd = options.nEmbd ?? 64;
  const nLayer = options.nLayer ?? 2;
  const nHead = options.nHead ?? 2;
  const nFf = options.nFf ?? 128;
  const ctx = options.contextLength ?? 256;
  const rand = prng(options.seed ?? 1);
  const vocab = buildVocab();
  const nVocab = vocab.tokens.length;
  const firstPiece = nVocab - PIECES.length;

  const filled = (n: number, f: (i: number) => number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = f(i);
    return a;
  };
  const randn = (n: number, scale: number): Float32Array => filled(n, () => (rand() * 2 - 1) * scale);
  const ones = (n: number): Float32Array => filled(n, () => 1);

  const tensors: Tensor[] = [{ name: 'token_embd.weight', dims: [nEmbd, nVocab], data: randn(nEmbd * nVocab, 1) }];
  const w = 1 / Math.sqrt(nEmbd);
  for (let l = 0; l < nLayer; l++) {
    const p = `blk.${l}`;
    tensors.push(
      { name: `${p}.attn_norm.weight`, dims: [nEmbd], data: ones(nEmbd) },
      { name: `${p}.attn_q.weight`, dims: [nEmbd, nEmbd], data: randn(nEmbd * nEmbd, w) },
      { name: `${p}.attn_k.weight`, dims: [nEmbd, nEmbd], data: randn(nEmbd * nEmbd, w) },
      { name: `${p}.attn_v.weight`, dims: [nEmbd, nEmbd], data: randn(nEmbd * nEmbd, w) },
      { name: `${p}.attn_output.weight`, dims: [nEmbd, nEmbd], data: randn(nEmbd * nEmbd, w) },
      { name: `${p}.ffn_norm.weight`, dims: [nEmbd], data: ones(nEmbd) },
      { name: `${p}.ffn_gate.weight`, dims: [nEmbd, nFf], data: randn(nEmbd * nFf, w) },
      { name: `${p}.ffn_up.weight`, dims: [nEmbd, nFf], data: randn(nEmbd * nFf, w) },
      { name: `${p}.ffn_down.weight`, dims: [nFf, nEmbd], data: randn(nFf * nEmbd, 1 / Math.sqrt(nFf)) },
    );
  }
  // Output rows are random only for word pieces and printable ASCII bytes: the other
  // tokens get logit 0, so the model rarely emits control tokens (an early </s>) or
  // stray bytes that are not valid UTF-8 on their own.
  const output = new Float32Array(nEmbd * nVocab);
  for (let t = 0; t < nVocab; t++) {
    const byte = t - 3;
    const live = t >= firstPiece || (byte >= 0x20 && byte < 0x7f);
    if (!live) continue;
    for (let i = 0; i < nEmbd; i++) output[t * nEmbd + i] = (rand() * 2 - 1) * 0.5;
  }
  tensors.push(
    { name: 'output_norm.weight', dims: [nEmbd], data: ones(nEmbd) },
    { name: 'output.weight', dims: [nEmbd, nVocab], data: output },
  );

  const meta: [string, MetaValue][] = [
    ['general.architecture', { t: 'str', v: 'llama' }],
    ['general.name', { t: 'str', v: 'leash-tiny-test' }],
    ['general.alignment', { t: 'u32', v: ALIGNMENT }],
    ['general.file_type', { t: 'u32', v: 0 }], // ALL_F32
    ['llama.context_length', { t: 'u32', v: ctx }],
    ['llama.embedding_length', { t: 'u32', v: nEmbd }],
    ['llama.block_count', { t: 'u32', v: nLayer }],
    ['llama.feed_forward_length', { t: 'u32', v: nFf }],
    ['llama.attention.head_count', { t: 'u32', v: nHead }],
    ['llama.attention.head_count_kv', { t: 'u32', v: nHead }],
    ['llama.attention.layer_norm_rms_epsilon', { t: 'f32', v: 1e-5 }],
    ['llama.rope.dimension_count', { t: 'u32', v: nEmbd / nHead }],
    ['llama.rope.freq_base', { t: 'f32', v: 10000 }],
    ['llama.vocab_size', { t: 'u32', v: nVocab }],
    ['tokenizer.ggml.model', { t: 'str', v: 'llama' }],
    ['tokenizer.ggml.tokens', { t: 'str[]', v: vocab.tokens }],
    ['tokenizer.ggml.scores', { t: 'f32[]', v: vocab.scores }],
    ['tokenizer.ggml.token_type', { t: 'i32[]', v: vocab.types }],
    ['tokenizer.ggml.unknown_token_id', { t: 'u32', v: 0 }],
    ['tokenizer.ggml.bos_token_id', { t: 'u32', v: 1 }],
    ['tokenizer.ggml.eos_token_id', { t: 'u32', v: 2 }],
    ['tokenizer.ggml.add_bos_token', { t: 'bool', v: true }],
    ['tokenizer.ggml.add_eos_token', { t: 'bool', v: false }],
  ];
  if (options.chatTemplate !== undefined) meta.push(['tokenizer.chat_template', { t: 'str', v: options.chatTemplate }]);

  const out = new Writer();
  out.push(Buffer.from('GGUF', 'ascii'));
  out.u32(3);
  out.u64(tensors.length);
  out.u64(meta.length);
  for (const [k, v] of meta) writeMeta(out, k, v);
  let offset = 0;
  for (const t of tensors) {
    out.str(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(GGML_F32);
    out.u64(offset);
    offset += Math.ceil(t.data.byteLength / ALIGNMENT) * ALIGNMENT;
  }
  out.pad();
  for (const t of tensors) {
    out.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    out.pad();
  }
  return out.toBuffer();
}

/** Writes a tiny model into a fresh temp dir; `cleanup` removes the dir. */
export function writeTinyGguf(options: TinyGgufOptions = {}): { path: string; dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'leash-gguf-'));
  const path = join(dir, 'tiny.gguf');
  writeFileSync(path, tinyGguf(options));
  return { path, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
