// apps/multi is its own Mega project: `mega start` here runs apps/web and apps/admin in one process,
// on one port, and routes each request by its Host header (web.localhost / admin.localhost).
import { defineConfig } from '@mega/kernel';

export default defineConfig({
  apps: ['web', 'admin'],
  // ./admin-password.ts: production refuses the admin app's built-in password (set ADMIN_PASSWORD).
  plugins: ['@mega/http', '@mega/security', '@mega/session', '@mega/i18n', '@mega/views', '@mega/health', './admin-password.ts'],
  // 3200 so it can run beside apps/simple (3000).
  server: { port: 3200 },
  health: { drainDelayMs: 0 },
});
