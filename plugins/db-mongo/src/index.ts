import type { HealthCheck, Kernel } from '@mega/kernel';
import { dbRegistry, definePlugin, ownAliases, packageVersion } from '@mega/kernel';
import type { MongoDeclaration } from './mongo.js';
import { MongoDb } from './mongo.js';

export type { DbAdapter, DbRegistry, HealthCheck, LatencySnapshot, OpStatsSnapshot } from '@mega/kernel';
export type { MongoDeclaration, MongoStats } from './mongo.js';
export { MongoDb } from './mongo.js';

const NAME = '@mega/db-mongo';

declare module '@mega/kernel' {
  interface MegaDbs {
    mongodb: MongoDb;
  }
  interface MegaContext {
    db<T extends MegaDbs[keyof MegaDbs] = MegaDbs[keyof MegaDbs]>(alias?: string): T;
  }
  interface AppExtensions {
    db<T extends MegaDbs[keyof MegaDbs] = MegaDbs[keyof MegaDbs]>(alias?: string): T;
  }
  interface MegaServices {
    'health:@mega/db-mongo': Record<string, HealthCheck>;
  }
}

export default definePlugin({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  setup(kernel: Kernel) {
    const log = kernel.log.child({ plugin: NAME });
    const declared = kernel.config.services?.dbs ?? {};
    const registry = dbRegistry(kernel, NAME);
    const checks: Record<string, HealthCheck> = {};
    const dbs = ownAliases(kernel, NAME).map((alias) => {
      const db = new MongoDb(alias, declared[alias] as MongoDeclaration, log);
      registry.add(db);
      checks[`db:${alias}`] = () => db.check();
      return db;
    });
    kernel.provide('health:@mega/db-mongo', checks, NAME);

    kernel.hooks.boot.tapPromise(NAME, async () => {
      await Promise.all(
        dbs.map(async (db) => {
          try {
            await db.connect();
          } catch (error) {
            if ((declared[db.alias] as MongoDeclaration).optional !== true) throw error;
            log.warn({ err: error, alias: db.alias }, `${(error as Error).message}; optional, operations fail until it answers`);
          }
        }),
      );
    });
    kernel.hooks.shutdown.tapPromise(NAME, async () => {
      await Promise.all(dbs.map((db) => db.close()));
    });
  },
});
