/**
 * @mega/lock: `ctx.lock` per app with fencing tokens, on memory, cluster (the primary's table) or
 * Redis. The Redis driver uses the client @mega/cache-redis owns for the alias (`api.use('redis')`):
 * this plugin never opens a Redis connection.
 */
import type { MegaTracer } from '@mega/adapters';
import { AdapterSet, pickAlias } from '@mega/adapters';
import type { RedisConnections } from '@mega/cache-redis';
import type { ConfigInput, Static } from '@mega/kernel';
import { ConfigError, definePlugin, PluginError, packageVersion, Type } from '@mega/kernel';
import type { LockDriver } from './driver.js';
import { ClusterLockDriver } from './drivers/cluster.js';
import { MemoryLockDriver } from './drivers/memory.js';
import { RedisLockConnection, RedisLockDriver } from './drivers/redis.js';
import { LockManager } from './lock.js';
import { createLockTable } from './primary.js';

export type { LatencySnapshot, OpStatsSnapshot } from '@mega/adapters';
export type { LockDriver } from './driver.js';
export type { LockWire } from './drivers/cluster.js';
export { ACQUIRE_LUA, defineLockCommands, EXTEND_LUA, RELEASE_LUA } from './drivers/redis.js';
export type { Lease, LockOptions, LockScope, LockStats } from './lock.js';
export { LockManager } from './lock.js';
export type { LockTable } from './primary.js';
export { createLockTable, LOCK_CHANNEL } from './primary.js';

const CACHE_REDIS = '@mega/cache-redis';

/** `lock` in apps/<name>/app.config.ts. */
export const LockAppConfig = Type.Object({
  lock: Type.Object(
    {
      /** Default: redis when `service` is set, else cluster inside `--workers`, else memory. */
      driver: Type.Optional(Type.Union([Type.Literal('memory'), Type.Literal('redis'), Type.Literal('cluster')])),
      /** The `services.caches` alias (driver redis, served by @mega/cache-redis). Default: `default`, or the only one. */
      service: Type.Optional(Type.String({ minLength: 1 })),
      /** Key prefix of this app. Default `<app name>:` (Redis keys: `mega:lock:<prefix><key>`). */
      prefix: Type.Optional(Type.String()),
      /** Default lease length (ms). */
      ttlMs: Type.Integer({ minimum: 1, default: 10_000 }),
      /** Default wait (ms); 0 tries once. */
      waitMs: Type.Integer({ minimum: 0, default: 5000 }),
      /** Redis: pause between attempts on a held key (ms, jittered). */
      retryDelayMs: Type.Integer({ minimum: 1, default: 10 }),
    },
    { additionalProperties: false, default: {} },
  ),
});
export type LockConfig = Static<typeof LockAppConfig>['lock'];

declare module '@mega/kernel' {
  /** This plugin's keys of app.config.ts (see the README's config table). */
  interface AppConfig {
    lock?: ConfigInput<typeof LockAppConfig>['lock'];
  }
  interface MegaContext {
    /** This app's locks. */
    readonly lock: LockManager;
  }
  interface AppExtensions {
    readonly lock: LockManager;
  }
}

export default definePlugin({
  name: '@mega/lock',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  config: { app: LockAppConfig },
  // Set up after the Redis owner and @mega/tracing when they are loaded, so their services are there.
  after: [CACHE_REDIS, '@mega/tracing'],
  primary: createLockTable,
  setup(api) {
    const tracer = api.has('tracing') ? api.use<MegaTracer>('tracing') : undefined;
    const inCluster = typeof process.send === 'function' && process.env.MEGA_WORKER_SLOT !== undefined;
    // One connection check per cache alias; one driver per alias and retry delay (apps may differ).
    const redisAliases = new AdapterSet<RedisLockConnection>({ kind: 'caches', preferred: 'default', label: 'lock' });
    const drivers = new Map<string, LockDriver>();
    const managers = new Map<string, LockManager>();

    for (const app of api.kernel.apps) {
      const config = api.appConfig(app).lock;
      const driverName = config.driver ?? (config.service ? 'redis' : inCluster ? 'cluster' : 'memory');
      let id: string = driverName;
      if (driverName === 'redis') {
        if (!api.has('redis')) {
          throw new PluginError(
            'plugin.missing_dependency',
            `app ${app.name}: lock.driver is redis, and Redis connections are owned by ${CACHE_REDIS}, which is not in plugins; run: mega plugin add ${CACHE_REDIS}`,
            { plugin: api.name, details: { app: app.name, missing: CACHE_REDIS } },
          );
        }
        const redis: RedisConnections = api.use('redis');
        const alias = pickAlias('caches', redis.aliases, config.service, 'default');
        // Optional here: whether Redis down stops boot is the owner's call (cache-redis connected it
        // first and failed boot for a required alias); reaching this check down means it is optional.
        if (!redisAliases.has(alias)) redisAliases.add(new RedisLockConnection(alias, redis.client(alias), redis.url(alias)), true);
        id = `redis:${alias}:${config.retryDelayMs}`;
        if (!drivers.has(id)) drivers.set(id, new RedisLockDriver(redisAliases.get(alias), config.retryDelayMs));
      } else if (config.service) {
        throw new ConfigError('config.invalid', `app ${app.name}: lock.service is only for the redis driver (driver is "${driverName}")`, {
          details: { app: app.name, driver: driverName },
        });
      } else if (!drivers.has(id)) drivers.set(id, driverName === 'cluster' ? new ClusterLockDriver() : new MemoryLockDriver());
      const driver = drivers.get(id) as LockDriver;
      const prefix = config.prefix ?? `${app.name}:`;
      managers.set(
        app.name,
        new LockManager(driver, {
          prefix: driverName === 'redis' ? `mega:lock:${prefix}` : prefix,
          log: app.log,
          ttlMs: config.ttlMs,
          waitMs: config.waitMs,
          tracer,
        }),
      );
    }
    // Loss reports from memory/cluster backends go to the manager owning the key's prefix.
    for (const driver of drivers.values()) {
      driver.onLost((key, token) => {
        for (const m of managers.values()) if (key.startsWith(m.prefix)) m.driverLost(key, token);
      });
    }
    // Redis: checked at boot (after cache-redis connected it), health `lock:<alias>`.
    redisAliases.attach(api);
    const local = [drivers.get('memory'), drivers.get('cluster')].filter((d): d is LockDriver => d !== undefined);
    const cluster = drivers.get('cluster');
    if (cluster) api.health('lock:cluster', () => cluster.check());
    api.tap('boot', async () => {
      await Promise.all(local.map((d) => d.connect()));
    });
    api.onShutdown(async () => {
      await Promise.all(local.map((d) => d.close()));
    });
    api.contributeCtx('lock', (ctx) => managers.get(ctx.app.name) as LockManager);
    api.contributeApp('lock', (app) => managers.get(app.name));
  },
});
