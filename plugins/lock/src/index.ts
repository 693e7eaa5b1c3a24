import type { App, HealthCheck, Kernel, ServiceDeclaration } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion, parseServiceUrl, pickAlias } from '@mega/kernel';
import type { LockDriver } from './driver.js';
import { ClusterLockDriver } from './drivers/cluster.js';
import { MemoryLockDriver } from './drivers/memory.js';
import { RedisLockDriver } from './drivers/redis.js';
import { LockManager } from './lock.js';

export type { HealthCheck, LatencySnapshot, OpStatsSnapshot } from '@mega/kernel';
export type { LockDriver } from './driver.js';
export type { LockWire } from './drivers/cluster.js';
export { ACQUIRE_LUA, defineLockCommands, EXTEND_LUA, RELEASE_LUA } from './drivers/redis.js';
export type { Lease, LockOptions, LockScope, LockStats } from './lock.js';
export { LockManager } from './lock.js';

const NAME = '@mega/lock';

/** `lock` in apps/<name>/app.config.ts. */
export interface LockConfig {
  /** Default: redis when `service` is set, else cluster inside `--workers`, else memory. */
  driver?: 'memory' | 'redis' | 'cluster';
  /** The `services.caches` alias (driver redis) holding the locks. Default: `default`, or the only one. */
  service?: string;
  /** Key prefix of this app. Default `<app name>:` (Redis keys: `mega:lock:<prefix><key>`). */
  prefix?: string;
  /** Default lease length. Default 10000. */
  ttlMs?: number;
  /** Default wait. Default 5000. */
  waitMs?: number;
  /** Redis: pause between attempts on a held key. Default 10. */
  retryDelayMs?: number;
}

declare module '@mega/kernel' {
  interface MegaContext {
    /** This app's locks. */
    readonly lock: LockManager;
  }
  interface AppExtensions {
    readonly lock: LockManager;
  }
  interface MegaServices {
    'health:@mega/lock': Record<string, HealthCheck>;
  }
}

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    driver: { enum: ['memory', 'redis', 'cluster'] },
    service: { type: 'string', minLength: 1 },
    prefix: { type: 'string' },
    ttlMs: { type: 'integer', minimum: 1, default: 10_000 },
    waitMs: { type: 'integer', minimum: 0, default: 5000 },
    retryDelayMs: { type: 'integer', minimum: 1, default: 10 },
  },
};

export default definePlugin<undefined>({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  configKey: 'lock',
  configScope: 'app',
  configSchema,
  setup(kernel: Kernel) {
    const log = kernel.log.child({ plugin: NAME });
    const caches = kernel.config.services?.caches ?? {};
    const inCluster = typeof process.send === 'function' && process.env.MEGA_WORKER_SLOT !== undefined;
    const drivers = new Map<string, LockDriver>();
    const managers = new Map<string, LockManager>();
    const checks: Record<string, HealthCheck> = {};

    for (const app of kernel.apps as App[]) {
      const config = kernel.appConfig<LockConfig & Required<Pick<LockConfig, 'ttlMs' | 'waitMs' | 'retryDelayMs'>>>(app, 'lock');
      const driverName = config.driver ?? (config.service ? 'redis' : inCluster ? 'cluster' : 'memory');
      let id: string = driverName;
      if (driverName === 'redis') {
        const alias = pickAlias('caches', Object.keys(caches), config.service, 'default');
        const decl = caches[alias] as ServiceDeclaration;
        if (decl.driver !== 'redis') {
          throw new ConfigError(
            'adapter.unknown_driver',
            `apps/${app.name}: lock.service "${alias}" is a ${decl.driver} cache; the redis lock needs driver redis`,
            {
              details: { app: app.name, alias, driver: decl.driver },
            },
          );
        }
        parseServiceUrl('caches', alias, decl.url, ['redis:', 'rediss:']);
        id = `redis:${alias}:${config.retryDelayMs}`;
        if (!drivers.has(id)) {
          drivers.set(id, new RedisLockDriver({ alias, url: decl.url as string, retryDelayMs: config.retryDelayMs }, log));
          checks[`lock:${alias}`] = () => (drivers.get(id) as LockDriver).check();
        }
      } else if (config.service) {
        throw new ConfigError('config.invalid', `apps/${app.name}: lock.service is only for the redis driver (driver is "${driverName}")`, {
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
        }),
      );
    }
    // Loss reports from memory/cluster backends go to the manager owning the key's prefix.
    for (const driver of drivers.values()) {
      driver.onLost((key, token) => {
        for (const m of managers.values()) if (key.startsWith(m.prefix)) m.driverLost(key, token);
      });
    }
    if (drivers.has('cluster')) checks['lock:cluster'] = () => (drivers.get('cluster') as LockDriver).check();
    kernel.provide('health:@mega/lock', checks, NAME);
    kernel.contributeCtx('lock', (ctx) => managers.get(ctx.app.name) as LockManager, NAME);
    kernel.contributeApp('lock', (app) => managers.get(app.name));

    kernel.hooks.boot.tapPromise(NAME, async () => {
      await Promise.all(
        [...drivers.values()].map(async (driver) => {
          try {
            await driver.connect();
          } catch (error) {
            const alias = (driver as RedisLockDriver).alias;
            if ((caches[alias] as { optional?: boolean } | undefined)?.optional !== true) throw error;
            log.warn({ err: error, alias }, `${(error as Error).message}; optional, acquisitions fail until it answers`);
          }
        }),
      );
    });
    kernel.hooks.shutdown.tapPromise(NAME, async () => {
      await Promise.all([...drivers.values()].map((d) => d.close()));
    });
  },
});
