/**
 * @mega/db-postgres: PostgreSQL databases by `services.dbs` alias (a `pg` pool, or embedded PGlite),
 * reached through `ctx.db(alias?)`, the registry it shares with @mega/db-mongo.
 */
import type { MegaTracer } from '@mega/adapters';
import { registerDbAdapters } from '@mega/adapters';
import { definePlugin, packageVersion } from '@mega/kernel';
import { POSTGRES_DRIVERS, PostgresDb } from './postgres.js';

export type { AdapterRegistry, LatencySnapshot, OpStatsSnapshot } from '@mega/adapters';
export type { DbStats, Queryable, QueryResult } from './postgres.js';
export { POSTGRES_DRIVERS, PostgresDb, PostgresDeclaration } from './postgres.js';

declare module '@mega/kernel' {
  /** Database adapters by driver; `ctx.db()` returns one of them. */
  interface MegaDbs {
    postgres: PostgresDb;
  }
  interface MegaContext {
    /** The database `alias` (default: `primary`, or the only one). `ctx.db<MongoDb>('docs')` narrows. */
    db<T extends MegaDbs[keyof MegaDbs] = MegaDbs[keyof MegaDbs]>(alias?: string): T;
  }
  interface AppExtensions {
    db<T extends MegaDbs[keyof MegaDbs] = MegaDbs[keyof MegaDbs]>(alias?: string): T;
  }
}

export default definePlugin({
  name: '@mega/db-postgres',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  drivers: { dbs: POSTGRES_DRIVERS },
  // @mega/tracing (optional) first: queries are traced when its `tracing` service is there.
  after: ['@mega/tracing'],
  // PGlite's first start runs initdb in WebAssembly: seconds on a busy machine.
  bootTimeoutMs: 60_000,
  setup(api) {
    const tracer = api.has('tracing') ? api.use<MegaTracer>('tracing') : undefined;
    const make = (alias: string, declaration: { driver: string }) => new PostgresDb(alias, declaration, api.kernel.dir, api.log, tracer);
    // Nothing declared at all (no database of any driver): an embedded `primary`, so ctx.db() works out of the box.
    registerDbAdapters(api, { make, fallback: () => make('primary', { driver: 'pglite' }) });
  },
});
