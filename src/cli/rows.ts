// Streamed text cut into screen rows as it arrives. Finished rows can be written
// once, above the live part of the screen (Ink's <Static>), so an answer longer
// than the terminal never makes Ink redraw the whole screen: only the row being
// typed stays live. Greedy word wrap, so a finished row never changes when more
// text arrives. Widths count code points (wide CJK glyphs may overflow a row and
// wrap in the terminal; the text is still all there).

export class RowSplitter {
  readonly #width: number;
  #current = '';

  constructor(width: number) {
    this.#width = Math.max(8, Math.floor(width));
  }

  /** The row still being filled. */
  get tail(): string {
    return this.#current;
  }

  /** Adds text; returns the rows it finished. */
  push(text: string): string[] {
    const done: string[] = [];
    for (const ch of text.replace(/\r\n?/g, '\n').replace(/\t/g, '  ')) {
      if (ch === '\n') {
        done.push(this.#current);
        this.#current = '';
        continue;
      }
      // Other control characters would move the cursor behind Ink's back.
      if (ch < ' ' || ch === '\x7f') continue;
      this.#current += ch;
      if ([...this.#current].length > this.#width) done.push(this.#breakRow());
    }
    return done;
  }

  /** Ends the text: the last row (if any) is finished too. */
  flush(): string[] {
    if (this.#current === '') return [];
    const last = this.#current;
    this.#current = '';
    return [last];
  }

  /** Cuts the overlong current row at its last space within the width (or hard, for a long word). */
  #breakRow(): string {
    const chars = [...this.#current];
    const head = chars.slice(0, this.#width + 1).join('');
    const space = head.lastIndexOf(' ');
    if (space > 0) {
      this.#current = this.#current.slice(space + 1);
      return head.slice(0, space).trimEnd();
    }
    this.#current = chars.slice(this.#width).join('');
    return chars.slice(0, this.#width).join('');
  }
}

/** All rows of a finished text (the same cuts the streaming splitter makes). */
export function wrapRows(text: string, width: number): string[] {
  const s = new RowSplitter(width);
  return [...s.push(text), ...s.flush()];
}
