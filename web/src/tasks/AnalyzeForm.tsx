// Starts an `analyze` task on a pasted document or an uploaded .txt file.

import { useRef, useState, type FormEvent } from 'react';
import type { Task } from '../../../src/client/index.ts';
import { readStored, useApi, writeStored } from '../api.tsx';
import { ModelSelect, useModels } from '../models.tsx';

const MAX_DOC_CHARS = 5_000_000;

export function AnalyzeForm({ onStarted }: { onStarted(task: Task): void }) {
  const { client, describe } = useApi();
  const models = useModels();
  const [doc, setDoc] = useState('');
  const [fileName, setFileName] = useState<string | null>(null);
  const [instructions, setInstructions] = useState('');
  const [chunkSize, setChunkSize] = useState('');
  const [model, setModel] = useState(() => readStored('leash.analyzeModel') ?? '');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  async function onFile(file: File | undefined): Promise<void> {
    if (!file) return;
    setError(null);
    if (file.size > MAX_DOC_CHARS * 4) {
      setError(`${file.name} is too large (at most about ${MAX_DOC_CHARS / 1_000_000} million characters).`);
      return;
    }
    setDoc(await file.text());
    setFileName(file.name);
  }

  async function submit(e: FormEvent): Promise<void> {
    e.preventDefault();
    if (doc.trim() === '') {
      setError('Paste a document or choose a .txt file first.');
      return;
    }
    const size = chunkSize.trim() === '' ? undefined : Number(chunkSize);
    if (size !== undefined && !(Number.isInteger(size) && size >= 200 && size <= 100_000)) {
      setError('Chunk size must be a whole number from 200 to 100000.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const task = await client.tasks.create({
        type: 'analyze',
        input: {
          document: doc,
          ...(instructions.trim() !== '' && { instructions: instructions.trim() }),
          ...(size !== undefined && { chunk_size: size }),
          ...(model !== '' && { model }),
        },
      });
      onStarted(task);
    } catch (err) {
      const m = describe(err);
      if (m !== null) setError(m);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="card analyze-form" onSubmit={(e) => void submit(e)} aria-labelledby="analyze-heading">
      <h2 id="analyze-heading">Analyze a document</h2>
      <label htmlFor="analyze-doc">Document</label>
      <textarea
        id="analyze-doc"
        rows={5}
        value={doc}
        onChange={(e) => {
          setDoc(e.target.value);
          setFileName(null);
        }}
        placeholder="Paste text here, or choose a .txt file below."
      />
      <div className="row">
        <input
          ref={fileInput}
          id="analyze-file"
          type="file"
          accept=".txt,text/plain"
          className="sr-only"
          onChange={(e) => void onFile(e.target.files?.[0])}
        />
        <button type="button" className="ghost" onClick={() => fileInput.current?.click()}>
          Choose .txt file…
        </button>
        <span className="muted small">
          {fileName ? `${fileName} · ` : ''}
          {doc.length.toLocaleString()} characters
        </span>
      </div>
      <details>
        <summary>Options</summary>
        <label htmlFor="analyze-instructions">Instructions</label>
        <input
          id="analyze-instructions"
          value={instructions}
          onChange={(e) => setInstructions(e.target.value)}
          placeholder="e.g. focus on risks"
        />
        <div className="row">
          <label>
            Chunk size
            <input
              id="analyze-chunk"
              inputMode="numeric"
              value={chunkSize}
              onChange={(e) => setChunkSize(e.target.value)}
              placeholder="4000"
              size={7}
            />
          </label>
          <label>
            Model{' '}
            <ModelSelect
              id="analyze-model"
              value={model}
              models={models}
              onChange={(v) => {
                setModel(v);
                writeStored('leash.analyzeModel', v);
              }}
            />
          </label>
        </div>
      </details>
      {error && (
        <p className="alert error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" className="primary" disabled={busy}>
        {busy ? 'Starting…' : 'Start analysis'}
      </button>
    </form>
  );
}
