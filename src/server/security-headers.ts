// Response headers that keep the web UI from being framed, sniffed or fed foreign
// scripts (@fastify/helmet), and CORS as an explicit allowlist (@fastify/cors):
// no origin but the server's own may read its answers unless LEASH_ALLOWED_ORIGINS
// names it. Preflights carry no key; they only answer with these headers.

import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

export function installSecurityHeaders(app: FastifyInstance, allowedOrigins: readonly string[]): void {
  void app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        // React sets `style` attributes; the UI has no <style> of its own beyond its CSS file.
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    referrerPolicy: { policy: 'no-referrer' },
    // Served over plain HTTP on loopback by default; TLS is a proxy's business.
    strictTransportSecurity: false,
    crossOriginEmbedderPolicy: false,
  });
  if (allowedOrigins.length === 0) return;
  void app.register(cors, {
    origin: [...allowedOrigins],
    methods: ['GET', 'HEAD', 'POST', 'DELETE'],
    allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'last-event-id', 'x-request-id'],
    exposedHeaders: ['location', 'x-task-id', 'x-request-id', 'retry-after', 'idempotent-replayed'],
    maxAge: 600,
  });
}
