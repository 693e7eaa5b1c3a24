import type { HealthCheck, Kernel } from '@mega/kernel';
import { dbRegistry, definePlugin, ownAliases, packageVersion } from '@mega/kernel';
import type { PostgresDeclaration } from './postgres.js';
import { checkPostgresDeclaration, PostgresDb } from './postgres.js';

export type { DbAdapter, DbRegistry, HealthCheck, LatencySnapshot, OpStatsSnapshot } from '@mega/kernel';
export type { DbStats, PostgresDeclaration, Queryable, QueryResult } from './postgres.js';
export { PostgresDb } from './postgres.js';

const NAME = '@mega/db-postgres';

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
  interface MegaServices {
    'health:@mega/db-postgres': Record<string, HealthCheck>;
  }
}

export default definePlugin({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  // PGlite's first start runs initdb in WebAssembly: seconds on a busy machine.
  bootTimeoutMs: 60_000,
  setup(kernel: Kernel) {
    const log = kernel.log.child({ plugin: NAME });
    const declared = kernel.config.services?.dbs ?? {};
    const aliases = ownAliases(kernel, NAME);
    const decls: Array<[string, PostgresDeclaration]> = aliases.map((a) => [a, declared[a] as PostgresDeclaration]);
    // Nothing declared at all: an embedded `primary`, so ctx.db() works out of the box.
    if (Object.keys(declared).length === 0) decls.push(['primary', { driver: 'pglite' }]);
    const registry = dbRegistry(kernel, NAME);
    const checks: Record<string, HealthCheck> = {};
    const dbs = decls.map(([alias, decl]) => {
      checkPostgresDeclaration(alias, decl);
      const db = new PostgresDb(alias, decl, kernel.dir, log);
      registry.add(db);
      checks[`db:${alias}`] = () => db.check();
      return db;
    });
    kernel.provide('health:@mega/db-postgres', checks, NAME);

    kernel.hooks.boot.tapPromise(NAME, async () => {
      await Promise.all(
        dbs.map(async (db) => {
          try {
            await db.connect();
            log.debug({ alias: db.alias }, `db "${db.alias}" ready (${db.driver} ${db.url})`);
          } catch (error) {
            const decl = declared[db.alias] as PostgresDeclaration | undefined;
            if (decl?.optional !== true) throw error;
            log.warn({ err: error, alias: db.alias }, `${(error as Error).message}; optional, queries fail until it answers`);
          }
        }),
      );
    });
    kernel.hooks.shutdown.tapPromise(NAME, async () => {
      await Promise.all(dbs.map((db) => db.close()));
    });
  },
});
