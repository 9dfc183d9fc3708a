// Builds the UI into web/dist, which the leash server serves at `/`.
// `npx vite web` serves it with hot reload and forwards API calls to a leash
// server on :8080 (`npm start` in another terminal).
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const api = process.env.LEASH_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Small app: one JS and one CSS file are fine; no source maps shipped.
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/api': api,
      '/v1': api,
      '/healthz': api,
    },
  },
});
