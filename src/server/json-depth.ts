// A bound on how deeply a request's JSON may nest. JSON.parse copes with any depth,
// but what comes after it recurses (schema checks, JSON.stringify into the store,
// hashing): 100,000 nested arrays fit in a 1 MiB body and would overflow the stack
// there, a 500 instead of a 400. Checked on the text, before parsing, in one pass.

/** Deeper than any real request (OpenAI-style message arrays nest under 10). */
export const MAX_JSON_DEPTH = 128;

/** True when `text` opens more than `max` arrays/objects at once (brackets inside strings don't count). */
export function jsonDepthExceeds(text: string, max: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
