// Global configuration of the `tasks` sample: a single-app project (app.config.ts sits beside this
// file). No service is declared, so everything is embedded: the memory jobs driver (no NATS), the
// memory lock (one process schedules), worker threads for the CPU task; metrics and traces on. See
// README.md for production.
import { defineConfig } from '@mega/kernel';

export default defineConfig({
  plugins: ['@mega/http', '@mega/lock', '@mega/jobs', '@mega/scheduler', '@mega/workers', '@mega/metrics', '@mega/tracing'],
  server: { port: 3000 },
  // GET /metrics (Prometheus text) on the app port; spans over OTLP/HTTP to MEGA_OTEL_ENDPOINT
  // (default http://localhost:4318/v1/traces: a local Jaeger or OpenTelemetry Collector).
  tracing: { serviceName: 'tasks' },
});
