// One LeashClient for the whole UI (same origin), the API key kept in
// localStorage, and a shared way to turn errors into messages: a 401 anywhere
// opens the key prompt instead of showing an error.

import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from 'react';
import { AuthError, LeashApiError, LeashClient, LeashConnectionError } from '../../src/client/index.ts';

const KEY_STORAGE = 'leash.apiKey';

export function readStored(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage disabled (private mode): the UI still works, it just forgets
  }
}

export function writeStored(key: string, value: string | null): void {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // see readStored
  }
}

interface Api {
  client: LeashClient;
  /** Bumped when the key changes: views refetch on it. */
  version: number;
  needKey: boolean;
  setKey(key: string | null): void;
  /** A message for the user, or null when the error is handled (401 → key prompt; aborts). */
  describe(err: unknown): string | null;
}

const ApiContext = createContext<Api | null>(null);

export function ApiProvider({ children }: { children: ReactNode }) {
  const client = useMemo(() => new LeashClient({ baseUrl: '', apiKey: readStored(KEY_STORAGE) ?? undefined }), []);
  const [version, setVersion] = useState(0);
  const [needKey, setNeedKey] = useState(false);

  const setKey = useCallback(
    (key: string | null) => {
      const k = key?.trim() || null;
      client.apiKey = k ?? undefined;
      writeStored(KEY_STORAGE, k);
      setNeedKey(false);
      setVersion((v) => v + 1);
    },
    [client],
  );

  const describe = useCallback((err: unknown): string | null => {
    if (err instanceof AuthError) {
      setNeedKey(true);
      return null;
    }
    if (err instanceof DOMException && err.name === 'AbortError') return null;
    if (err instanceof LeashApiError) return err.message;
    if (err instanceof LeashConnectionError) return 'Cannot reach the leash server. Is it running?';
    return err instanceof Error ? err.message : String(err);
  }, []);

  const value = useMemo(
    () => ({ client, version, needKey, setKey, describe }),
    [client, version, needKey, setKey, describe],
  );
  return <ApiContext.Provider value={value}>{children}</ApiContext.Provider>;
}

export function useApi(): Api {
  const api = useContext(ApiContext);
  if (api === null) throw new Error('useApi outside ApiProvider');
  return api;
}
