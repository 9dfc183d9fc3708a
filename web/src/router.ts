// A tiny path router: `/`, `/chat/:threadId`, `/tasks`, `/tasks/:taskId`. The
// server answers index.html for every non-API path, so a reload keeps the place.

import { useEffect, useState } from 'react';

export type Route = { view: 'chat'; threadId: string | null } | { view: 'tasks'; taskId: string | null };

export function parseRoute(path: string): Route {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'tasks') return { view: 'tasks', taskId: parts[1] ?? null };
  if (parts[0] === 'chat') return { view: 'chat', threadId: parts[1] ?? null };
  return { view: 'chat', threadId: null };
}

export function routePath(r: Route): string {
  if (r.view === 'tasks') return r.taskId ? `/tasks/${encodeURIComponent(r.taskId)}` : '/tasks';
  return r.threadId ? `/chat/${encodeURIComponent(r.threadId)}` : '/';
}

const listeners = new Set<() => void>();

export function navigate(r: Route, opts: { replace?: boolean } = {}): void {
  const path = routePath(r);
  if (path === location.pathname) return;
  if (opts.replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  for (const l of listeners) l();
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.pathname));
  useEffect(() => {
    const update = (): void => setRoute(parseRoute(location.pathname));
    listeners.add(update);
    addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      removeEventListener('popstate', update);
    };
  }, []);
  return route;
}
