import { type BootProjectOptions, bootProject, captureLogs, exposedText, stopAll, writeProject } from '@mega/testing';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { jar, sessionFiles } from './fixtures.js';

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

afterEach(stopAll);

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:56379';

describe('@mega/session (redis store, real Redis)', () => {
  it('stores sessions in Redis with the TTL, regenerates and destroys them', async () => {
    const prefix = `mega:test:${Date.now().toString(36)}:`;
    const { inject } = await boot(
      sessionFiles(
        `{ secret: 'a-session-secret-for-tests', ttlMs: 120000, store: { driver: 'redis', cache: 'sessions', prefix: '${prefix}' } }`,
      ),
      {
        config: `{ plugins: ['@mega/http', '@mega/session', '@mega/cache-redis'], server: { port: 0, host: '127.0.0.1' }, services: { caches: { sessions: { driver: 'redis', url: '${url}' } } } }`,
      },
    );
    const redis = new Redis(url);
    try {
      const browser = jar();
      const login = await inject('/login', { method: 'POST', body: '{"user":"grace"}', headers: { 'content-type': 'application/json' } });
      browser.take(login.headers['set-cookie'] as string[]);
      const { before, after } = login.data as { before: string; after: string };
      expect(await redis.exists(`${prefix}${before}`)).toBe(0);
      expect(JSON.parse((await redis.get(`${prefix}${after}`)) as string)).toEqual({ cart: 3, user: 'grace' });
      const ttl = await redis.pttl(`${prefix}${after}`);
      expect(ttl).toBeGreaterThan(100_000);
      expect(ttl).toBeLessThanOrEqual(120_000);
      const fresh = await inject('/me', { headers: browser.header });
      expect([fresh.json, fresh.headers['set-cookie']]).toEqual([{ data: { user: 'grace', sid: after } }, undefined]);
      // Rolling: a read in the second half of the lifetime re-saves it (one GET+PTTL round trip).
      await redis.pexpire(`${prefix}${after}`, 30_000);
      const rolled = await inject('/me', { headers: browser.header });
      expect(String(rolled.headers['set-cookie'])).toMatch(/mega_sid=.*Max-Age=120/);
      expect(await redis.pttl(`${prefix}${after}`)).toBeGreaterThan(100_000);
      await inject('/logout', { method: 'POST', headers: { ...browser.header, 'content-type': 'application/json' }, body: '{}' });
      expect(await redis.exists(`${prefix}${after}`)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  // The connection belongs to @mega/cache-redis now: an unreachable Redis fails boot with its code.
  it('fails boot with cache.unavailable when Redis cannot be reached', async () => {
    await expect(
      boot(sessionFiles(`{ secret: 'a-session-secret-for-tests', store: { driver: 'redis', cache: 'sessions' } }`), {
        config: `{ plugins: ['@mega/http', '@mega/session', '@mega/cache-redis'], server: { port: 0, host: '127.0.0.1' }, services: { caches: { sessions: { driver: 'redis', url: 'redis://127.0.0.1:1' } } } }`,
      }),
    ).rejects.toMatchObject({ code: 'cache.unavailable' });
  });

  it('never shows the password of the cache URL in boot errors or logs', async () => {
    const { logger, lines } = captureLogs('debug');
    const password = 'hunter2-session-pw';
    const error = await boot(sessionFiles(`{ secret: 'a-session-secret-for-tests', store: { driver: 'redis', cache: 'sessions' } }`), {
      config: `{ plugins: ['@mega/http', '@mega/session', '@mega/cache-redis'], server: { port: 0, host: '127.0.0.1' }, services: { caches: { sessions: { driver: 'redis', url: 'redis://:${password}@127.0.0.1:1' } } } }`,
      logger,
    }).then(
      () => undefined,
      (e: unknown) => e as Error & { details?: unknown },
    );
    expect(error).toMatchObject({ code: 'cache.unavailable', message: expect.stringContaining('redis://:***@127.0.0.1:1') });
    expect(exposedText(error, lines)).not.toContain(password);
  });
});
