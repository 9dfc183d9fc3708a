// The model picker's choices: the server's /v1/models when it has that route,
// otherwise the built-in simulated models. '' means "the server's default".

import { useEffect, useState } from 'react';
import { useApi } from './api.tsx';

export const FALLBACK_MODELS = ['simulated', 'simulated:echo'];

export function useModels(): string[] {
  const { client, version } = useApi();
  const [models, setModels] = useState<string[]>(FALLBACK_MODELS);
  useEffect(() => {
    const ac = new AbortController();
    client
      .models({ signal: ac.signal })
      .then((list) => {
        const ids = list.map((m) => m.id).filter((id) => typeof id === 'string' && id !== '');
        setModels([...new Set([...ids, ...FALLBACK_MODELS])]);
      })
      .catch(() => setModels(FALLBACK_MODELS)); // no /v1 surface (404) or no key yet: keep the fixed list
    return () => ac.abort();
  }, [client, version]);
  return models;
}

export function ModelSelect(props: { value: string; onChange(v: string): void; models: string[]; id?: string }) {
  const { value, onChange, models } = props;
  const options = value !== '' && !models.includes(value) ? [value, ...models] : models;
  return (
    <select id={props.id} value={value} onChange={(e) => onChange(e.target.value)} aria-label="Model">
      <option value="">server default</option>
      {options.map((m) => (
        <option key={m} value={m}>
          {m}
        </option>
      ))}
    </select>
  );
}
