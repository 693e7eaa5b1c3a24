import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { boot, stopAll } from '../../../scripts/test/http-kernel.js';
import { jar, sessionFiles } from './fixtures.js';

afterEach(stopAll);

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:56379';

describe('@mega/session (redis store, real Redis)', () => {
  it('stores sessions in Redis with the TTL, regenerates and destroys them', async () => {
    const prefix = `mega:test:${Date.now().toString(36)}:`;
    const { call } = await boot(
      sessionFiles(
        `{ secret: 'a-session-secret-for-tests', ttlMs: 120000, store: { driver: 'redis', cache: 'sessions', prefix: '${prefix}' } }`,
      ),
      {
        config: `{ plugins: ['@mega/http', '@mega/session'], server: { port: 0, host: '127.0.0.1' }, services: { caches: { sessions: { driver: 'redis', url: '${url}' } } } }`,
      },
    );
    const redis = new Redis(url);
    try {
      const browser = jar();
      const login = await call('/login', { method: 'POST', body: '{"user":"grace"}', headers: { 'content-type': 'application/json' } });
      browser.take(login.headers['set-cookie'] as string[]);
      const { before, after } = login.data as { before: string; after: string };
      expect(await redis.exists(`${prefix}${before}`)).toBe(0);
      expect(JSON.parse((await redis.get(`${prefix}${after}`)) as string)).toEqual({ cart: 3, user: 'grace' });
      const ttl = await redis.pttl(`${prefix}${after}`);
      expect(ttl).toBeGreaterThan(100_000);
      expect(ttl).toBeLessThanOrEqual(120_000);
      const fresh = await call('/me', { headers: browser.header });
      expect([fresh.json, fresh.headers['set-cookie']]).toEqual([{ data: { user: 'grace', sid: after } }, undefined]);
      // Rolling: a read in the second half of the lifetime re-saves it (one GET+PTTL round trip).
      await redis.pexpire(`${prefix}${after}`, 30_000);
      const rolled = await call('/me', { headers: browser.header });
      expect(String(rolled.headers['set-cookie'])).toMatch(/mega_sid=.*Max-Age=120/);
      expect(await redis.pttl(`${prefix}${after}`)).toBeGreaterThan(100_000);
      await call('/logout', { method: 'POST', headers: { ...browser.header, 'content-type': 'application/json' }, body: '{}' });
      expect(await redis.exists(`${prefix}${after}`)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('fails boot with session.store_unavailable when Redis cannot be reached', async () => {
    await expect(
      boot(sessionFiles(`{ secret: 'a-session-secret-for-tests', store: { driver: 'redis', url: 'redis://127.0.0.1:1' } }`), {
        config: `{ plugins: ['@mega/http', '@mega/session'], server: { port: 0, host: '127.0.0.1' } }`,
      }),
    ).rejects.toMatchObject({ code: 'session.store_unavailable' });
  });
});
