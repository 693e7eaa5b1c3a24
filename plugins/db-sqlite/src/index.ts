/**
 * @mega/db-sqlite: SQLite databases by `services.dbs` alias through `node:sqlite`, reached through
 * `ctx.db(alias?)`, the registry it shares with @mega/db-postgres and @mega/db-mongo.
 */
import type { MegaTracer } from '@mega/adapters';
import { registerDbAdapters } from '@mega/adapters';
import { definePlugin, packageVersion } from '@mega/kernel';
import { SQLITE_DRIVERS, SqliteDb } from './sqlite.js';

export type { AdapterRegistry, LatencySnapshot, OpStatsSnapshot, SqlDb } from '@mega/adapters';
export { kyselyDatabase, NodeSqliteDialect } from './dialect.js';
export type { Queryable, QueryResult, SqliteStats } from './sqlite.js';
export { SQLITE_DRIVERS, SqliteDb, SqliteDeclaration, sqliteLocation } from './sqlite.js';

declare module '@mega/kernel' {
  interface MegaDbs {
    sqlite: SqliteDb;
  }
  interface MegaContext {
    db<T extends MegaDbs[keyof MegaDbs] = MegaDbs[keyof MegaDbs]>(alias?: string): T;
  }
  interface AppExtensions {
    db<T extends MegaDbs[keyof MegaDbs] = MegaDbs[keyof MegaDbs]>(alias?: string): T;
  }
}

export default definePlugin({
  name: '@mega/db-sqlite',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  drivers: { dbs: SQLITE_DRIVERS },
  // @mega/tracing (optional) first: statements are traced when its `tracing` service is there.
  after: ['@mega/tracing'],
  setup(api) {
    const tracer = api.has('tracing') ? api.use<MegaTracer>('tracing') : undefined;
    registerDbAdapters(api, { make: (alias, declaration) => new SqliteDb(alias, declaration, api.kernel.dir, api.log, tracer) });
  },
});
