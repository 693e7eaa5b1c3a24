/**
 * @mega/cache-redis: every Redis connection of the project, by `services.caches` alias. Apps get
 * JSON caches (`ctx.cache(alias?)`); other plugins get the clients through the `redis` service
 * (`api.use('redis').client(alias)`) and never open their own.
 */
import { AdapterSet } from '@mega/adapters';
import { definePlugin, packageVersion } from '@mega/kernel';
import type { Redis } from 'ioredis';
import { RedisCache } from './cache.js';

export type { LatencySnapshot, OpStatsSnapshot } from '@mega/adapters';
export type { CacheStats, SetOptions } from './cache.js';
export { RedisCache, RedisCacheDeclaration } from './cache.js';

/** The Redis connections of the project, for other plugins (service `redis`). */
export interface RedisConnections {
  readonly aliases: string[];
  /** The shared ioredis client of services.caches.<alias> (default alias `default` or the only one).
   *  Owned by @mega/cache-redis: consumers never quit/disconnect it. */
  client(alias?: string): Redis;
  /** A dedicated connection (subscriber / blocking commands) owned and closed at shutdown by cache-redis. */
  dedicated(alias: string | undefined, purpose: string): Redis;
  /** The alias's URL, redacted (for messages). */
  url(alias?: string): string;
}

/** Every cache alias of the project (service `caches`). */
export type CacheRegistry = AdapterSet<RedisCache>;

declare module '@mega/kernel' {
  interface MegaServices {
    redis: RedisConnections;
    caches: CacheRegistry;
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
  name: '@mega/cache-redis',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  drivers: { caches: ['redis'] },
  setup(api) {
    const caches: CacheRegistry = new AdapterSet<RedisCache>({ kind: 'caches', preferred: 'default' })
      .addDeclared(api, (alias, declaration) => new RedisCache(alias, declaration, api.log))
      .attach(api);
    const connections: RedisConnections = {
      get aliases() {
        return caches.aliases;
      },
      client: (alias) => caches.get(alias).native,
      dedicated: (alias, purpose) => caches.get(alias).dedicated(purpose),
      url: (alias) => caches.get(alias).url as string,
    };
    api.provide('redis', connections);
    api.provide('caches', caches);
    const cacheOf = (alias?: string) => caches.get(alias);
    api.contributeCtx('cache', () => cacheOf);
    api.contributeApp('cache', () => cacheOf);
  },
});
