/** @mega/cache-redis against the real Redis from scripts/services.sh, restart included. */
import { getApp } from '@mega/kernel';
import { bootPlugins, buildPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../../scripts/test/procs.js';
import { restartService } from '../../../scripts/test/restart.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import cache from '../src/index.js';

const env = serviceEnv();
afterEach(stopAll);

const boot = (caches: Record<string, Record<string, unknown> & { driver: string }>, apps?: Record<string, object>) =>
  bootPlugins({ plugins: [cache], services: { caches: caches as never }, ...(apps ? { apps } : {}) }).then((b) => b.kernel);

describe('@mega/cache-redis', () => {
  it('get/set/del JSON values with TTLs; ctx.cache, getApp().cache, .native, stats, readiness', async () => {
    const kernel = await boot(
      { default: { driver: 'redis', url: env.REDIS_URL, keyPrefix: `mega:test:${process.pid}:` } },
      { cacheapp: {} },
    );
    const ctx = kernel.createContext(kernel.apps[0] as never);
    const c = ctx.cache();
    expect(getApp('cacheapp').cache('default')).toBe(c);
    await c.set('user:1', { name: 'Ada', tags: ['x'], n: 1.5 });
    expect(await c.get('user:1')).toEqual({ name: 'Ada', tags: ['x'], n: 1.5 });
    expect(await c.get('missing')).toBeUndefined();
    await c.set('short', 'lived', { ttlMs: 100 });
    expect(await c.native.pttl('short')).toBeGreaterThan(0);
    await until(async () => ((await c.get('short')) === undefined ? true : undefined), 2000, 'expiry');
    expect(await c.del('user:1', 'nothing')).toBe(1);
    await expect(c.set('bad', undefined)).rejects.toMatchObject({ code: 'cache.invalid_value' });
    await expect(c.set('bad', 1, { ttlMs: -5 })).rejects.toMatchObject({ code: 'cache.invalid_ttl' });
    await c.native.set('raw', 'not json');
    await expect(c.get('raw')).rejects.toMatchObject({ code: 'cache.invalid_value' });
    await c.native.lpush('list', 'a');
    await expect(c.get('list')).rejects.toMatchObject({ code: 'cache.failed' });
    await c.del('raw', 'list');
    const health = kernel.healthChecks().find((h) => h.name === 'cache:default');
    expect(health?.plugin).toBe('@mega/cache-redis');
    await health?.check();
    const s = c.stats();
    expect(s).toMatchObject({ driver: 'redis', alias: 'default', status: 'ready', errors: 2 });
    expect(s.operations).toBeGreaterThanOrEqual(9);
    expect(s.latency.maxMs).toBeGreaterThan(0);
  });

  it('recovers after a Redis restart mid-test', async () => {
    const kernel = await boot({ main: { driver: 'redis', url: env.REDIS_URL, keyPrefix: `mega:restart:${process.pid}:` } });
    const c = kernel.apps[0]?.cache('main');
    if (!c) throw new Error('no cache');
    await c.set('before', 1);
    await restartService('redis');
    // Redis keeps no data across restarts here; what matters is that the same client works again.
    await until(async () => ((await c.set('after', 2).then(() => true)) ? true : undefined), 20_000, 'set after restart');
    expect(await c.get('after')).toBe(2);
    expect(await c.get('before')).toBeUndefined();
    expect(c.stats().status).toBe('ready');
  });

  it('bad input: unknown alias, wrong driver, malformed URL, down at boot (unless optional)', async () => {
    const kernel = await boot({ a: { driver: 'redis', url: env.REDIS_URL }, b: { driver: 'redis', url: env.REDIS_URL } });
    expect(() => kernel.apps[0]?.cache('c')).toThrow(
      expect.objectContaining({ code: 'adapter.unknown_alias', details: { kind: 'caches', alias: 'c', known: ['a', 'b'] } }),
    );
    expect(() => kernel.apps[0]?.cache()).toThrow(expect.objectContaining({ code: 'adapter.ambiguous_alias' }));
    await stopAll();
    const start = (caches: Record<string, Record<string, unknown>>) =>
      buildPlugins({ plugins: [cache], services: { caches: caches as never } }).kernel.start();
    await expect(start({ x: { driver: 'memcached', url: 'memcached://x' } })).rejects.toMatchObject({ code: 'adapter.unknown_driver' });
    await expect(start({ x: { driver: 'redis', url: 'redis//x' } })).rejects.toMatchObject({ code: 'adapter.invalid_url' });
    await expect(start({ x: { driver: 'redis', url: 'http://x' } })).rejects.toMatchObject({ code: 'adapter.invalid_url' });
    await expect(start({ x: { driver: 'redis' } })).rejects.toMatchObject({ code: 'adapter.invalid_url' });
    const down = 'redis://:hunter2@127.0.0.1:1';
    const err = await start({ sessions: { driver: 'redis', url: down, connectTimeoutMs: 1000 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'cache.unavailable', details: { alias: 'sessions', url: 'redis://:***@127.0.0.1:1' } });
    expect((err as Error).message).toMatch(/cache "sessions" cannot connect to redis:\/\/:\*\*\*@127\.0\.0\.1:1/);
    const optional = await boot({ sessions: { driver: 'redis', url: down, optional: true, connectTimeoutMs: 500, commandTimeoutMs: 300 } });
    await expect(optional.apps[0]?.cache().get('k')).rejects.toMatchObject({ code: 'cache.unavailable', status: 503 });
  });
});
