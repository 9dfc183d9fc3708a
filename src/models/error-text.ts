// Error text for messages that leave the model layer: short, and never a stack.

/** At most `n` characters (an upstream may answer with a whole web page). */
export const clip = (s: string, n = 500): string => (s.length > n ? `${s.slice(0, n)}…` : s);

/** The message of whatever was thrown (its name when the message is empty). */
export const errorText = (e: unknown): string => (e instanceof Error ? e.message || e.name : String(e));
