// The path of a request no route matched, normalized for the few decisions made
// on it (the web UI's SPA fallback, the rate limiter's bucket). Matched requests
// are judged by their route, never by this. It decodes more eagerly than the
// router does (repeatedly, case-folded, `;params` and dot segments removed), so a
// spelling of an API path is always seen as one: at worst a page load gets a JSON
// 404 instead of index.html, never the other way round.

const API_PREFIXES = ['/api/', '/v1/'];
const API_EXACT = new Set(['/api', '/v1', '/healthz', '/readyz', '/metrics']);

/** `rawUrl`'s path decoded and normalized; null when it does not decode (treated as API by callers). */
export function normalizePath(rawUrl: string): string | null {
  let p = rawUrl.split(/[?#]/, 1)[0] ?? '';
  for (let i = 0; i < 4 && p.includes('%'); i++) {
    try {
      p = decodeURIComponent(p);
    } catch {
      return null;
    }
  }
  const out: string[] = [];
  for (const raw of p.toLowerCase().replace(/\\/g, '/').split('/')) {
    const seg = raw.split(';', 1)[0] ?? '';
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return '/' + out.join('/');
}

/** True for a normalized path outside the API, probes and metrics (i.e. one the web UI may answer). */
export function isUiPath(normalized: string | null): boolean {
  if (normalized === null) return false;
  return !API_EXACT.has(normalized) && !API_PREFIXES.some((p) => normalized.startsWith(p));
}
