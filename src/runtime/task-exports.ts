// What a task module exports: its default export (one definition or an array), else
// its named exports (each one, or an array). Read the same way by `leash serve
// --tasks` and by an isolated handler's worker looking its definition up again.

/** The candidate definitions of an imported module, in export order (not yet checked). */
export function taskExportsOf(mod: Record<string, unknown>): unknown[] {
  const flat = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);
  if (mod.default !== undefined) return flat(mod.default);
  return Object.values(mod).flatMap(flat);
}
