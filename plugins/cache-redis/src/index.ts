import type { HealthCheck, Kernel } from '@mega/kernel';
import { ConfigError, definePlugin, packageVersion, pickAlias, type UnavailableError } from '@mega/kernel';
import type { RedisCacheDeclaration } from './cache.js';
import { RedisCache } from './cache.js';

export type { HealthCheck, LatencySnapshot, OpStatsSnapshot } from '@mega/kernel';
export type { CacheStats, RedisCacheDeclaration, SetOptions } from './cache.js';
export { RedisCache } from './cache.js';

const NAME = '@mega/cache-redis';
const DEFAULT_ALIAS = 'default';

/** Every cache alias of the project, by name. */
export class CacheRegistry {
  readonly #caches = new Map<string, RedisCache>();

  get aliases(): string[] {
    return [...this.#caches.keys()];
  }

  /** The cache called `alias`; without one, `default` or the only cache. */
  get(alias?: string): RedisCache {
    return this.#caches.get(pickAlias('caches', this.aliases, alias, DEFAULT_ALIAS)) as RedisCache;
  }

  add(cache: RedisCache): void {
    this.#caches.set(cache.alias, cache);
  }

  all(): RedisCache[] {
    return [...this.#caches.values()];
  }
}

declare module '@mega/kernel' {
  interface MegaServices {
    caches: CacheRegistry;
    'health:@mega/cache-redis': Record<string, HealthCheck>;
  }
  interface MegaContext {
    /** The Redis cache `alias` (default: `default`, or the only one). */
    cache(alias?: string): RedisCache;
  }
  interface AppExtensions {
    cache(alias?: string): RedisCache;
  }
}

export default definePlugin({
  name: NAME,
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  setup(kernel: Kernel) {
    const registry = new CacheRegistry();
    const checks: Record<string, HealthCheck> = {};
    const log = kernel.log.child({ plugin: NAME });
    for (const [alias, decl] of Object.entries(kernel.config.services?.caches ?? {})) {
      if (decl.driver !== 'redis') {
        throw new ConfigError('adapter.unknown_driver', `services.caches.${alias}: unknown driver "${decl.driver}" (known: redis)`, {
          details: { kind: 'caches', alias, driver: decl.driver, known: ['redis'] },
        });
      }
      const cache = new RedisCache(alias, decl as RedisCacheDeclaration, log);
      registry.add(cache);
      checks[`cache:${alias}`] = () => cache.check();
    }
    const cacheOf = (alias?: string) => registry.get(alias);
    kernel.provide('caches', registry, NAME);
    kernel.provide('health:@mega/cache-redis', checks, NAME);
    kernel.contributeCtx('cache', () => cacheOf, NAME);
    kernel.contributeApp('cache', () => cacheOf);

    kernel.hooks.boot.tapPromise(NAME, async () => {
      await Promise.all(
        registry.all().map(async (cache) => {
          try {
            await cache.connect();
            log.debug({ alias: cache.alias }, `cache "${cache.alias}" connected to ${cache.url}`);
          } catch (error) {
            const optional = (kernel.config.services?.caches?.[cache.alias] as RedisCacheDeclaration | undefined)?.optional === true;
            if (!optional) throw error;
            log.warn({ err: error, alias: cache.alias }, `${(error as UnavailableError).message}; optional, retrying in the background`);
          }
        }),
      );
    });
    kernel.hooks.shutdown.tapPromise(NAME, async () => {
      await Promise.all(registry.all().map((c) => c.close()));
    });
  },
});
