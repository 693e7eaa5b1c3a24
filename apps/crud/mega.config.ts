// Global configuration of the `crud` sample, a single-app project (app.config.ts sits beside this
// file). With no CRUD_* variable set everything is embedded: PGlite under .mega/pglite/primary, the
// memory jobs driver and lock, chat history and the mail outbox in memory. Each variable moves one
// part onto a real service (see README.md):
//   CRUD_DATABASE_URL  postgres://...  users and notes on PostgreSQL
//   CRUD_MONGO_URL     mongodb://...   the mail outbox in MongoDB (alias `docs`)
//   CRUD_REDIS_URL     redis://...     chat history, sessions and the scheduler's lock in Redis
//   CRUD_NATS_URL      nats://...      jobs on NATS JetStream
import { defineConfig } from '@mega/kernel';

const { CRUD_DATABASE_URL, CRUD_MONGO_URL, CRUD_REDIS_URL, CRUD_NATS_URL } = process.env;

export default defineConfig({
  plugins: [
    '@mega/http',
    '@mega/security',
    '@mega/session',
    '@mega/db-postgres',
    ...(CRUD_MONGO_URL ? ['@mega/db-mongo'] : []),
    ...(CRUD_REDIS_URL ? ['@mega/cache-redis'] : []),
    ...(CRUD_NATS_URL ? ['@mega/bus'] : []),
    '@mega/lock',
    '@mega/jobs',
    '@mega/scheduler',
    '@mega/models',
    '@mega/migrations',
    '@mega/ws',
    '@mega/asp',
    '@mega/ws-presence',
  ],
  server: { port: 3000 },
  services: {
    dbs: {
      primary: { driver: 'postgres', ...(CRUD_DATABASE_URL ? { url: CRUD_DATABASE_URL } : {}) },
      ...(CRUD_MONGO_URL ? { docs: { driver: 'mongodb', url: CRUD_MONGO_URL } } : {}),
    },
    ...(CRUD_REDIS_URL ? { caches: { default: { driver: 'redis', url: CRUD_REDIS_URL, keyPrefix: 'crud:' } } } : {}),
    ...(CRUD_NATS_URL ? { buses: { default: { driver: 'nats', url: CRUD_NATS_URL } } } : {}),
  },
});
