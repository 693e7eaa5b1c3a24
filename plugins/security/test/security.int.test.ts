import { randomBytes } from 'node:crypto';
import { type BootProjectOptions, bootProject, captureLogs, exposedText, stopAll, writeProject } from '@mega/testing';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisRateStore } from '../src/index.js';

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

afterEach(stopAll);

const config = (extra = '') =>
  `{ plugins: ['@mega/http', '@mega/security', '@mega/cache-redis'], server: { port: 0, host: '127.0.0.1' }${extra} }`;
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
    const { inject } = await boot(project, { config: cfg });
    // Another process of the same app shares the counters: simulate its hits with the same store.
    const redis = new Redis(url);
    const other = new RedisRateStore(redis, 30000, `mega:rate:${app}:`);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        statuses.push((await inject('/')).status);
        statuses.push((await other.hit('127.0.0.1')).count > 4 ? 429 : 200);
      }
      expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
      const limited = await inject('/');
      expect([limited.status, limited.code, Number(limited.headers['retry-after']) > 0]).toEqual([429, 'rate.limited', true]);
      expect(await redis.pttl(`mega:rate:${app}:127.0.0.1`)).toBeGreaterThan(25000);
    } finally {
      redis.disconnect();
    }
  });

  // The connection belongs to @mega/cache-redis now: an unreachable Redis fails boot with its code.
  it('fails boot when the Redis rate store is unreachable', async () => {
    await expect(
      boot(files(`{ ${SECRET} }`), { config: config(`, services: { caches: { rate: { driver: 'redis', url: 'redis://127.0.0.1:1' } } }`) }),
    ).rejects.toMatchObject({ code: 'cache.unavailable' });
  });

  it('never shows the password of the cache URL in boot errors or logs', async () => {
    const { logger, lines } = captureLogs('debug');
    const password = 'hunter2-security-pw';
    const error = await boot(files(`{ ${SECRET} }`), {
      config: config(`, services: { caches: { rate: { driver: 'redis', url: 'redis://:${password}@127.0.0.1:1' } } }`),
      logger,
    }).then(
      () => undefined,
      (e: unknown) => e as Error & { details?: unknown },
    );
    expect(error).toMatchObject({ code: 'cache.unavailable', message: expect.stringContaining('redis://:***@127.0.0.1:1') });
    expect(exposedText(error, lines)).not.toContain(password);
  });

  it('fails open, bounded by rateLimit.timeoutMs, while an optional Redis alias is down', async () => {
    const { logger, lines } = captureLogs();
    const password = 'hunter2-optional-pw';
    const { inject } = await boot(files(`{ ${SECRET}, rateLimit: { max: 1, timeoutMs: 50 } }`), {
      config: config(`, services: { caches: { rate: { driver: 'redis', url: 'redis://:${password}@127.0.0.1:1', optional: true } } }`),
      logger,
    });
    const started = performance.now();
    for (let i = 0; i < 3; i++) expect((await inject('/', { host: 'web.test' })).status).toBe(200);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(lines.filter((l) => l.reason === 'rate.store_unavailable').length).toBe(3);
    expect(JSON.stringify(lines)).not.toContain(password);
  });
});
