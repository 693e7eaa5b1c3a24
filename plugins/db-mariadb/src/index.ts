/**
 * @mega/db-mariadb: MariaDB and MySQL databases by `services.dbs` alias through `mysql2`, reached
 * through `ctx.db(alias?)`, the registry it shares with the other database plugins.
 */
import type { MegaTracer } from '@mega/adapters';
import { registerDbAdapters } from '@mega/adapters';
import { definePlugin, packageVersion } from '@mega/kernel';
import { MARIADB_DRIVERS, MariadbDb } from './mariadb.js';

export type { AdapterRegistry, LatencySnapshot, OpStatsSnapshot, SqlDb } from '@mega/adapters';
export type { MariadbStats, Queryable, QueryResult } from './mariadb.js';
export { MARIADB_DRIVERS, MariadbDb, MariadbDeclaration } from './mariadb.js';

declare module '@mega/kernel' {
  interface MegaDbs {
    mariadb: MariadbDb;
  }
  interface MegaContext {
    db<T extends MegaDbs[keyof MegaDbs] = MegaDbs[keyof MegaDbs]>(alias?: string): T;
  }
  interface AppExtensions {
    db<T extends MegaDbs[keyof MegaDbs] = MegaDbs[keyof MegaDbs]>(alias?: string): T;
  }
}

export default definePlugin({
  name: '@mega/db-mariadb',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  drivers: { dbs: MARIADB_DRIVERS },
  // @mega/tracing (optional) first: statements are traced when its `tracing` service is there.
  after: ['@mega/tracing'],
  setup(api) {
    // mysql2 pools open connections on demand: an optional alias down at boot needs no retry of its own.
    const tracer = api.has('tracing') ? api.use<MegaTracer>('tracing') : undefined;
    registerDbAdapters(api, { make: (alias, declaration) => new MariadbDb(alias, declaration, api.log, tracer) });
  },
});
