// Global configuration of the `chat` sample: a single-app project (app.config.ts sits beside this
// file). Without CHAT_DATABASE_URL the database is embedded PGlite under .mega/pglite/primary.
import { defineConfig } from '@mega/kernel';

export default defineConfig({
  plugins: ['@mega/http', '@mega/security', '@mega/session', '@mega/db-postgres', '@mega/ws', '@mega/asp', '@mega/ws-presence'],
  server: { port: 3000 },
  services: {
    dbs: { primary: { driver: 'postgres', ...(process.env.CHAT_DATABASE_URL ? { url: process.env.CHAT_DATABASE_URL } : {}) } },
  },
});
