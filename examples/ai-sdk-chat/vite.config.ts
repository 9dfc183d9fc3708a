// `npx vite` here (or `npm run example:ai-sdk-chat` at the repository root) serves the
// chat on http://localhost:5173 and forwards /api to a running leash server
// (LEASH_URL, default http://127.0.0.1:8080), so the page and the API share one
// origin and no CORS setting is needed.
//
// Inside the leash repository the example runs on the repository's own sources and
// packages (no install): `leash/ai-sdk` is src/client/ai-sdk.ts and `@ai-sdk/react`
// is the repository's @ai-sdk/react-v7. A copy of this folder with its own
// `npm install` uses the published packages instead.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const api = process.env.LEASH_URL ?? 'http://127.0.0.1:8080';
const repo = join(import.meta.dirname, '..', '..');
const inRepo = existsSync(join(repo, 'src', 'client', 'ai-sdk.ts'));
const ownInstall = existsSync(join(import.meta.dirname, 'node_modules', '@ai-sdk', 'react'));

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  resolve:
    inRepo && !ownInstall
      ? {
          alias: [
            { find: /^leash\/ai-sdk$/, replacement: join(repo, 'src', 'client', 'ai-sdk.ts') },
            { find: /^@ai-sdk\/react$/, replacement: '@ai-sdk/react-v7' },
          ],
        }
      : {},
  server: { proxy: { '/api': api } },
});
