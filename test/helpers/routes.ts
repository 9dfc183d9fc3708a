// The routes a Fastify server has, read from its router (`printRoutes`), so a test
// covers every route there is rather than a hand-picked list.

export interface Route {
  path: string;
  methods: string[];
}

/** Routes from `printRoutes({commonPrefix: false})`: one line per node, 4 columns per level. */
export function routesOf(tree: string): Route[] {
  const stack: string[] = [];
  const out: Route[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│├└─\s]*?)(?:[├└]── )(\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (m === null) continue;
    const depth = Math.floor((m[1] ?? '').length / 4);
    stack.length = depth;
    const parent = stack[depth - 1] ?? '';
    const seg = m[2] ?? '';
    const path = parent === '' ? seg : parent.endsWith('/') || seg.startsWith('/') ? parent + seg : `${parent}/${seg}`;
    stack[depth] = path;
    if (m[3] !== undefined) out.push({ path, methods: m[3].split(',').map((s) => s.trim()) });
  }
  return out;
}
