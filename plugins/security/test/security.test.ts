import { definePlugin } from '@mega/kernel';
import { type BootProjectOptions, bootProject, captureLogs, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { API_CSP, apiHeaders, helmetHeaders, MemoryRateStore } from '../src/index.js';

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

afterEach(stopAll);

const config = (extra = '') => `{ plugins: ['@mega/http', '@mega/security'], server: { port: 0, host: '127.0.0.1' }${extra} }`;

const ROUTES = `export default (r: any) => {
  r.http.get('/', async () => ({ ok: true }));
  r.http.get('/form', async (_q: any, _p: any, ctx: any) => ({ token: ctx.csrfToken() }));
  r.http.post('/submit', async (req: any) => ({ got: req.body?.name ?? null }));
  r.http.post('/hook', async () => 'open', { csrf: false });
};`;

function files(security = '{}', hosts = "['web.test']") {
  return {
    'apps/web/app.config.ts': `export default { hosts: ${hosts}, security: ${security} };`,
    'apps/web/routes/r.ts': ROUTES,
  };
}

const SECRET = "secret: 'a-test-secret-of-some-length'";

describe('@mega/security', () => {
  it('adds helmet headers to every response: the full set on documents, the JSON subset on JSON', async () => {
    const { inject } = await boot(
      {
        ...files(`{ ${SECRET} }`),
        'apps/web/routes/html.ts': `export default (r: any) => { r.http.get('/page', async (_q: any, reply: any) => reply.type('text/html').send('<p>hi</p>')); };`,
        'apps/web/public/app.js': 'console.log(1);\n',
      },
      { config: config() },
    );
    const json = await inject('/', { host: 'web.test' });
    expect(json.status).toBe(200);
    expect(json.headers).toMatchObject({
      'x-content-type-options': 'nosniff',
      'content-security-policy': API_CSP,
      'x-frame-options': 'SAMEORIGIN',
      'cross-origin-resource-policy': 'same-origin',
    });
    expect(json.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    expect(json.headers['referrer-policy']).toBeUndefined();
    const page = await inject('/page', { host: 'web.test' });
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    expect(page.headers).toMatchObject({ 'referrer-policy': 'no-referrer', 'cross-origin-opener-policy': 'same-origin' });
    const file = await inject('/static/app.js', { host: 'web.test' });
    expect([file.status, file.headers['content-security-policy']]).toEqual([200, expect.stringContaining("default-src 'self'")]);
    const missing = await inject('/nope', { host: 'web.test' });
    expect([missing.status, missing.headers['x-frame-options'], missing.headers['x-powered-by']]).toEqual([404, 'SAMEORIGIN', undefined]);
    expect(helmetHeaders({ xFrameOptions: false }).some(([k]) => k === 'x-frame-options')).toBe(false);
    expect(apiHeaders(helmetHeaders({ contentSecurityPolicy: false })).map(([k]) => k)).not.toContain('content-security-policy');
  });

  it("sends helmet's full set on JSON too with helmetScope: 'all'", async () => {
    const { inject } = await boot(files(`{ ${SECRET}, helmetScope: 'all' }`), { config: config() });
    expect((await inject('/', { host: 'web.test' })).headers['content-security-policy']).toContain("default-src 'self'");
  });

  it('denies cross-origin reads unless configured, and answers preflights', async () => {
    const denied = await boot(files(`{ ${SECRET} }`), { config: config() });
    const simple = await denied.inject('/', { host: 'web.test', headers: { origin: 'https://evil.test' } });
    expect([simple.status, simple.headers['access-control-allow-origin']]).toEqual([200, undefined]);
    const preflight = await denied.inject('/submit', {
      method: 'OPTIONS',
      host: 'web.test',
      headers: { origin: 'https://evil.test', 'access-control-request-method': 'POST' },
    });
    expect([preflight.status, preflight.code]).toEqual([403, 'cors.origin_denied']);
    await stopAll();
    const open = await boot(files(`{ ${SECRET}, cors: { origin: ['https://app.test'], credentials: true } }`), { config: config() });
    const ok = await open.inject('/submit', {
      method: 'OPTIONS',
      host: 'web.test',
      headers: { origin: 'https://app.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    expect(ok.status).toBe(204);
    expect(ok.headers).toMatchObject({
      'access-control-allow-origin': 'https://app.test',
      'access-control-allow-credentials': 'true',
      'access-control-allow-headers': 'content-type',
    });
    // A CORS-allowed origin may also send JSON writes.
    const write = await open.inject('/submit', {
      method: 'POST',
      host: 'web.test',
      body: '{"name":"x"}',
      headers: { 'content-type': 'application/json', origin: 'https://app.test' },
    });
    expect(write.json).toEqual({ data: { got: 'x' } });
  });

  it('limits each client IP per window with 429 rate.limited and Retry-After (memory)', async () => {
    const { logger, lines } = captureLogs();
    const { inject } = await boot(files(`{ ${SECRET}, rateLimit: { max: 3, windowMs: 60000 } }`), { config: config(), logger });
    for (let i = 0; i < 3; i++) expect((await inject('/', { host: 'web.test' })).status).toBe(200);
    const limited = await inject('/', { host: 'web.test' });
    expect([limited.status, limited.code]).toEqual([429, 'rate.limited']);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    // 404s count too (scanners do not get a free pass), and another IP has its own budget.
    expect((await inject('/nope', { host: 'web.test' })).status).toBe(429);
    expect((await inject('/', { host: 'web.test', localAddress: '127.0.0.2' })).status).toBe(200);
    expect(lines.some((l) => l.reason === 'rate.limited' && l.ip === '127.0.0.1')).toBe(true);
  });

  it('sweeps finished windows from memory', () => {
    const store = new MemoryRateStore(10);
    store.hit('a');
    store.hit('b');
    expect(store.size).toBe(2);
    store.sweep();
    expect(store.size).toBe(2);
    const later = Date.now() + 20;
    const real = Date.now;
    Date.now = () => later;
    try {
      store.sweep();
    } finally {
      Date.now = real;
    }
    expect(store.size).toBe(0);
    store.close();
  });

  it('CSRF: forms need a valid token, JSON needs an Origin in hosts, safe methods and opted-out routes pass', async () => {
    const { logger, lines } = captureLogs();
    const { inject } = await boot(files(`{ ${SECRET} }`), { config: config(), logger });
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const post = (body: string, headers: Record<string, string>) => inject('/submit', { method: 'POST', host: 'web.test', body, headers });

    const missing = await post('name=a', form);
    expect([missing.status, missing.code]).toEqual([403, 'csrf.missing_token']);
    const page = await inject('/form', { host: 'web.test' });
    const token = (page.data as { token: string }).token;
    const cookie = String(page.headers['set-cookie']?.[0]).split(';')[0] as string;
    expect(cookie).toMatch(/^mega_csrf=/);
    const good = await post(`name=a&_csrf=${encodeURIComponent(token)}`, { ...form, cookie });
    expect(good.json).toEqual({ data: { got: 'a' } });
    const viaHeader = await post('name=h', { ...form, cookie, 'x-csrf-token': token });
    expect(viaHeader.json).toEqual({ data: { got: 'h' } });
    const forged = await post(`name=a&_csrf=${encodeURIComponent(`${token.split('.')[0]}.AAAA`)}`, { ...form, cookie });
    expect([forged.status, forged.code]).toEqual([403, 'csrf.invalid_token']);
    const otherBrowser = await post(`name=a&_csrf=${encodeURIComponent(token)}`, { ...form, cookie: 'mega_csrf=someoneelsesnonce123' });
    expect([otherBrowser.status, otherBrowser.code]).toEqual([403, 'csrf.invalid_token']);
    const noCookie = await post(`name=a&_csrf=${encodeURIComponent(token)}`, form);
    expect([noCookie.status, noCookie.code]).toEqual([403, 'csrf.invalid_token']);

    const json = { 'content-type': 'application/json' };
    const noOrigin = await post('{"name":"j"}', json);
    expect([noOrigin.status, noOrigin.code]).toEqual([403, 'csrf.origin_missing']);
    const evil = await post('{"name":"j"}', { ...json, origin: 'https://evil.test' });
    expect([evil.status, evil.code]).toEqual([403, 'csrf.origin_mismatch']);
    const nullOrigin = await post('{"name":"j"}', { ...json, origin: 'null' });
    expect([nullOrigin.status, nullOrigin.code]).toEqual([403, 'csrf.origin_missing']);
    const same = await post('{"name":"j"}', { ...json, origin: 'http://web.test' });
    expect(same.json).toEqual({ data: { got: 'j' } });

    expect((await inject('/hook', { method: 'POST', host: 'web.test', body: 'x=1', headers: form })).text).toBe('open');
    expect((await inject('/', { host: 'web.test' })).status).toBe(200);
    const reasons = lines.filter((l) => l.msg === 'security: request rejected').map((l) => l.reason);
    expect(reasons).toEqual([
      'csrf.missing_token',
      'csrf.invalid_token',
      'csrf.invalid_token',
      'csrf.invalid_token',
      'csrf.origin_missing',
      'csrf.origin_mismatch',
      'csrf.origin_missing',
    ]);
  });

  it('refuses a secret shorter than 16 bytes (32 in production), from the file or from MEGA_SECURITY_SECRET, with security.secret_missing', async () => {
    for (const env of ['development', 'production']) {
      await expect(boot(files(`{ secret: 'too-short' }`), { config: config(), env })).rejects.toMatchObject({
        code: 'security.secret_missing',
        message: expect.stringContaining(`at least ${env === 'production' ? 32 : 16} bytes`),
      });
      process.env.MEGA_SECURITY_SECRET = 'too-short';
      try {
        await expect(boot(files('{}'), { config: config(), env })).rejects.toMatchObject({
          code: 'security.secret_missing',
          message: expect.stringMatching(new RegExp(`MEGA_SECURITY_SECRET.*at least ${env === 'production' ? 32 : 16} bytes`)),
        });
      } finally {
        delete process.env.MEGA_SECURITY_SECRET;
      }
    }
  });

  it('names @mega/cache-redis when the rate limit cache is a Redis alias and cache-redis is not loaded', async () => {
    // Another plugin serving the driver keeps the kernel's own driver check quiet; only cache-redis provides `redis`.
    const other = definePlugin({ name: '@acme/redis', version: '1.0.0', drivers: { caches: ['redis'] }, setup() {} });
    const password = 'hunter2-missing-pw';
    const error = await boot(files(`{ ${SECRET} }`), {
      config: config(`, services: { caches: { rate: { driver: 'redis', url: 'redis://:${password}@127.0.0.1:1' } } }`),
      plugins: [other],
    }).catch((e: Error) => e);
    expect(error).toMatchObject({
      code: 'plugin.missing_dependency',
      message: expect.stringContaining('mega plugin add @mega/cache-redis'),
    });
    expect((error as Error).message).toContain('redis://:***@127.0.0.1:1');
    expect((error as Error).message).not.toContain(password);
  });

  it('boots in production without a secret when CSRF is off', async () => {
    const { inject } = await boot(files('{ csrf: false }'), { config: config(), env: 'production' });
    const res = await inject('/submit', {
      method: 'POST',
      host: 'web.test',
      body: 'name=n',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(res.json).toEqual({ data: { got: 'n' } });
  });

  it('refuses to boot in production without a CSRF secret, and turns off per app', async () => {
    await expect(boot(files('{}'), { config: config(), env: 'production' })).rejects.toMatchObject({ code: 'security.secret_missing' });
    const off = await boot(files('{ enabled: false }'), { config: config(), env: 'production' });
    const res = await off.inject('/submit', {
      method: 'POST',
      host: 'web.test',
      body: 'name=z',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect([res.json, res.headers['x-content-type-options']]).toEqual([{ data: { got: 'z' } }, undefined]);
  });
});
