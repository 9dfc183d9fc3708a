import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** `task_` + 20 random base36 chars (~103 bits), e.g. task_3k9x0q…; ids never encode order or owner. */
export function newId(prefix: string): string {
  const bytes = randomBytes(20);
  let out = prefix + '_';
  for (const b of bytes) out += ALPHABET[b % 36];
  return out;
}
