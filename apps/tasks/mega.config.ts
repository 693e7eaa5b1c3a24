// Global configuration of the `tasks` sample: a single-app project (app.config.ts sits beside this
// file). No service is declared, so everything is embedded: the memory jobs driver (no NATS), the
// memory lock (one process schedules), worker threads for the CPU task. See README.md for production.
import { defineConfig } from '@mega/kernel';

export default defineConfig({
  plugins: ['@mega/http', '@mega/lock', '@mega/jobs', '@mega/scheduler', '@mega/workers'],
  server: { port: 3000 },
});
