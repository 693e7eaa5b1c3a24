import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { boot, stopAll } from '../../../scripts/test/http-kernel.js';
import { RedisRateStore } from '../src/index.js';

afterEach(stopAll);

const config = (extra = '') => `{ plugins: ['@mega/http', '@mega/security'], server: { port: 0, host: '127.0.0.1' }${extra} }`;
const SECRET = "secret: 'a-test-secret-of-some-length'";
const ROUTES = `export default (r: any) => { r.http.get('/', async () => ({ ok: true })); };`;
const files = (security: string) => ({
  'apps/web/app.config.ts': `export default { hosts: ['web.test'], security: ${security} };`,
  'apps/web/routes/r.ts': ROUTES,
});

describe('@mega/security rate limit on real Redis', () => {
  it('shares the rate limit across processes through Redis when services.caches.rate exists', async () => {
    const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:56379';
    const app = `r${randomBytes(4).toString('hex')}`;
    const project = {
      [`apps/${app}/app.config.ts`]: `export default { security: { ${SECRET}, rateLimit: { max: 4, windowMs: 30000 } } };`,
      [`apps/${app}/routes/r.ts`]: ROUTES,
    };
    const cfg = config(`, services: { caches: { rate: { driver: 'redis', url: '${url}' } } }`);
    const { call } = await boot(project, { config: cfg });
    // Another process of the same app shares the counters: simulate its hits with the same store.
    const redis = new Redis(url);
    const other = new RedisRateStore(redis, 30000, `mega:rate:${app}:`);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        statuses.push((await call('/')).status);
        statuses.push((await other.hit('127.0.0.1')).count > 4 ? 429 : 200);
      }
      expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
      const limited = await call('/');
      expect([limited.status, limited.code, Number(limited.headers['retry-after']) > 0]).toEqual([429, 'rate.limited', true]);
      expect(await redis.pttl(`mega:rate:${app}:127.0.0.1`)).toBeGreaterThan(25000);
    } finally {
      redis.disconnect();
    }
  });

  it('fails boot when the Redis rate store is unreachable', async () => {
    await expect(
      boot(files(`{ ${SECRET} }`), { config: config(`, services: { caches: { rate: { driver: 'redis', url: 'redis://127.0.0.1:1' } } }`) }),
    ).rejects.toMatchObject({ code: 'security.rate_store_unavailable' });
  });
});
