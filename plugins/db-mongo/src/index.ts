/**
 * @mega/db-mongo: MongoDB databases by `services.dbs` alias through the official driver, reached
 * through `ctx.db(alias?)`, the registry it shares with @mega/db-postgres.
 */
import type { MegaTracer } from '@mega/adapters';
import { registerDbAdapters } from '@mega/adapters';
import { definePlugin, packageVersion } from '@mega/kernel';
import { MONGO_DRIVERS, MongoDb } from './mongo.js';

export type { AdapterRegistry, LatencySnapshot, OpStatsSnapshot } from '@mega/adapters';
export type { MongoStats } from './mongo.js';
export { MONGO_DRIVERS, MongoDb, MongoDeclaration } from './mongo.js';

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
}

export default definePlugin({
  name: '@mega/db-mongo',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  drivers: { dbs: MONGO_DRIVERS },
  // @mega/tracing (optional) first: commands are traced when its `tracing` service is there.
  after: ['@mega/tracing'],
  setup(api) {
    const tracer = api.has('tracing') ? api.use<MegaTracer>('tracing') : undefined;
    // The driver reconnects by itself: an optional alias down at boot needs no retry of its own.
    registerDbAdapters(api, { make: (alias, declaration) => new MongoDb(alias, declaration, api.log, tracer) });
  },
});
