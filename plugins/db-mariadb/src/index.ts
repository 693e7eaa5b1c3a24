/**
 * @mega/db-mariadb: MariaDB and MySQL databases by `services.dbs` alias through `mysql2`, reached
 * through `ctx.db(alias?)`, the registry it shares with the other database plugins.
 */
import { AdapterSet, sharedRegistry } from '@mega/adapters';
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
  setup(api) {
    // mysql2 pools open connections on demand: an optional alias down at boot needs no retry of its own.
    const dbs = new AdapterSet<MariadbDb>({ kind: 'dbs', preferred: 'primary' })
      .addDeclared(api, (alias, declaration) => new MariadbDb(alias, declaration, api.log))
      .attach(api);
    const registry = sharedRegistry<MariadbDb>(api, 'dbs', 'db', 'primary');
    for (const db of dbs.all()) registry.add(db.alias, db);
  },
});
