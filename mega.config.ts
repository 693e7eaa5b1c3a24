// Global configuration of the sample project: the apps under apps/ share these plugins and the server.
// Per-app settings (hosts, sessions, security, ...) live in apps/<name>/app.config.ts.
import { defineConfig } from '@mega/kernel';

export default defineConfig({
  plugins: ['@mega/http'],
  server: { port: 3000 },
});
