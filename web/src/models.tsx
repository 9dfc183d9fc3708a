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

/** The server's default model, or null until known (or when the server is too old to say). */
export function useDefaultModel(): string | null {
  const { client, version } = useApi();
  const [model, setModel] = useState<string | null>(null);
  useEffect(() => {
    const ac = new AbortController();
    client
      .modelInfo({ signal: ac.signal })
      .then((r) => setModel(r.default))
      .catch(() => setModel(null));
    return () => ac.abort();
  }, [client, version]);
  return model;
}

/** Said wherever answers come from the built-in simulated model, so nobody takes them for real ones. */
export function SimulatedNotice({ model }: { model: string | null }) {
  if (model === null || !model.startsWith('simulated')) return null;
  return (
    <p className="simulated-notice" role="note">
      Answers are simulated: <code>{model}</code> is leash&apos;s built-in model and writes plausible nonsense. For real
      ones, run Ollama on this machine or start leash with <code>LEASH_MODEL=openai:&lt;model&gt;</code> and{' '}
      <code>OPENAI_API_KEY</code>.
    </p>
  );
}

export function ModelSelect(props: {
  value: string;
  onChange(v: string): void;
  models: string[];
  id?: string;
  defaultModel?: string | null;
}) {
  const { value, onChange, models } = props;
  const options = value !== '' && !models.includes(value) ? [value, ...models] : models;
  return (
    <select id={props.id} value={value} onChange={(e) => onChange(e.target.value)} aria-label="Model">
      <option value="">{props.defaultModel ? `server default (${props.defaultModel})` : 'server default'}</option>
      {options.map((m) => (
        <option key={m} value={m}>
          {m}
        </option>
      ))}
    </select>
  );
}
