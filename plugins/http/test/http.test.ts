import { definePlugin } from '@mega/kernel';
import { type BootProjectOptions, bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';

afterEach(stopAll);

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

const ROUTES = `
import { MegaError, NotFoundError } from '@mega/kernel';
export default (router: any) => {
  router.http.get('/obj', async (_req: any, _reply: any, ctx: any) => ({ app: ctx.app.name, id: typeof ctx.id }));
  router.http.get('/wrapped', async () => ({ data: [1, 2], meta: { total: 2 } }));
  router.http.get('/text', async () => 'plain text');
  router.http.get('/empty', async () => undefined);
  router.http.get('/manual', async (_req: any, reply: any) => reply.code(201).send({ raw: true }));
  router.http.get('/missing', async () => { throw new NotFoundError('user.not_found', 'no such user', { details: { id: 7 } }); });
  router.http.get('/teapot', async () => { throw new MegaError('brew.failed', 'short and stout', { status: 418 }); });
  router.http.get('/crash', async () => { throw new Error('secret internals'); });
  router.http.get('/db-down', async () => {
    throw new MegaError('db.query_failed', 'relation "users" does not exist', { status: 500, details: { statement: 'select * from users', sqlState: '42P01' } });
  });
  router.http.get('/unavailable', async () => { throw new MegaError('db.unavailable', 'db.internal:5432 refused', { status: 503 }); });
  router.http.post('/echo', async (req: any) => req.body, { schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } } });
};
`;

describe('@mega/http', () => {
  it('wraps results in { data } once, passes raw bodies through, answers /health', async () => {
    const { inject } = await boot({ 'apps/web/app.config.ts': 'export default {};', 'apps/web/routes/main.ts': ROUTES });
    expect((await inject('/obj')).json).toEqual({ data: { app: 'web', id: 'string' } });
    expect((await inject('/wrapped')).json).toEqual({ data: [1, 2], meta: { total: 2 } });
    expect((await inject('/text')).text).toBe('plain text');
    expect((await inject('/empty')).status).toBe(204);
    const manual = await inject('/manual');
    expect([manual.status, manual.json]).toEqual([201, { raw: true }]);
    expect((await inject('/health')).json).toEqual({ data: { status: 'ok' } });
  });

  it('maps errors to { error: { code, message, details } } with the right status', async () => {
    const { inject } = await boot({ 'apps/web/app.config.ts': 'export default {};', 'apps/web/routes/main.ts': ROUTES });
    const missing = await inject('/missing');
    expect([missing.status, missing.json]).toEqual([
      404,
      { error: { code: 'user.not_found', message: 'no such user', details: { id: 7 } } },
    ]);
    expect((await inject('/teapot')).status).toBe(418);
    const notFound = await inject('/nope');
    expect([notFound.status, (notFound.json?.error as { code: string } | undefined)?.code]).toEqual([404, 'not_found']);
    const badJson = await inject('/echo', { method: 'POST', body: '{"name":', headers: { 'content-type': 'application/json' } });
    expect([badJson.status, (badJson.json?.error as { code: string } | undefined)?.code]).toEqual([400, 'http.invalid_json']);
    const invalid = await inject('/echo', { method: 'POST', body: '{"nom":1}', headers: { 'content-type': 'application/json' } });
    expect(invalid.status).toBe(400);
    expect(invalid.json?.error).toMatchObject({ code: 'validation.failed', details: [expect.objectContaining({ keyword: 'required' })] });
    const ok = await inject('/echo', { method: 'POST', body: '{"name":"x"}', headers: { 'content-type': 'application/json' } });
    expect(ok.json).toEqual({ data: { name: 'x' } });
  });

  it('hides internals of unknown errors in production and shows the stack in development', async () => {
    const prod = await boot({ 'apps/web/app.config.ts': 'export default {};', 'apps/web/routes/main.ts': ROUTES }, { env: 'production' });
    const crash = await prod.inject('/crash');
    expect([crash.status, crash.json]).toEqual([500, { error: { code: 'internal', message: 'internal server error' } }]);
    // A typed server-side error keeps its code and status; what the driver said (SQL, hosts) stays in the log.
    const dbError = await prod.inject('/db-down');
    expect([dbError.status, dbError.json]).toEqual([500, { error: { code: 'db.query_failed', message: 'internal server error' } }]);
    const down = await prod.inject('/unavailable');
    expect([down.status, down.json]).toEqual([503, { error: { code: 'db.unavailable', message: 'service unavailable' } }]);
    await stopAll();
    const dev = await boot({ 'apps/web/app.config.ts': 'export default {};', 'apps/web/routes/main.ts': ROUTES }, { env: 'development' });
    const devCrash = await dev.inject('/crash');
    expect(devCrash.json?.error).toMatchObject({
      code: 'internal',
      message: 'secret internals',
      stack: expect.stringContaining('Error: secret internals'),
    });
    expect((await dev.inject('/db-down')).json?.error).toMatchObject({ code: 'db.query_failed', details: { sqlState: '42P01' } });
  });

  it('passes every route through the kernel route hook before Fastify sees it', async () => {
    const seen: string[] = [];
    const rewriter = definePlugin({
      name: 'rewriter',
      version: '1.0.0',
      dependsOn: ['@mega/http'],
      setup(api) {
        api.tap('route', (route) => {
          seen.push(`${route.app.name} ${route.method} ${route.path}`);
          return route.path === '/old' ? { ...route, path: '/new' } : route;
        });
      },
    });
    const { inject } = await boot(
      {
        'apps/web/app.config.ts': 'export default {};',
        'apps/web/routes/a.ts': `export default (r: any) => { r.http.get('/old', async () => 'moved'); };`,
      },
      { plugins: [rewriter] },
    );
    expect(seen).toEqual(['web GET /old']);
    expect((await inject('/new')).text).toBe('moved');
    expect((await inject('/old')).status).toBe(404);
  });

  it('serves several apps on one port by Host, with a default app', async () => {
    const { inject } = await boot({
      'apps/admin/app.config.ts': `export default { hosts: ['admin.test'] };`,
      'apps/admin/routes/r.ts': `export default (r: any) => { r.http.get('/', async (_q: any, _p: any, ctx: any) => ctx.app.name); };`,
      'apps/site/app.config.ts': 'export default {};',
      'apps/site/routes/r.ts': `export default (r: any) => { r.http.get('/', async (_q: any, _p: any, ctx: any) => ctx.app.name); };`,
    });
    expect((await inject('/', { host: 'admin.test' })).text).toBe('admin');
    expect((await inject('/', { host: 'ADMIN.test:8080' })).text).toBe('admin');
    expect((await inject('/', { host: 'other.test' })).text).toBe('site');
  });

  it('rejects broken route files with a coded error naming the file', async () => {
    const { kernel: k1 } = await boot(
      {
        'apps/web/app.config.ts': 'export default {};',
        'apps/web/routes/bad.ts': `export default { not: 'a function' };`,
      },
      { start: false },
    );
    await expect(k1.start()).rejects.toMatchObject({
      code: 'http.route_file_invalid',
      plugin: '@mega/http',
      message: expect.stringContaining('routes/bad.ts'),
    });
    const { kernel: k2 } = await boot(
      {
        'apps/web/app.config.ts': 'export default {};',
        'apps/web/routes/syntax.ts': `export default (r: any) => {\n  r.http.get('/', \n};`,
      },
      { start: false },
    );
    await expect(k2.start()).rejects.toMatchObject({ code: 'http.route_file_syntax', message: expect.stringMatching(/syntax.ts:3/) });
    const { kernel: k3 } = await boot(
      {
        'apps/web/app.config.ts': 'export default {};',
        'apps/web/routes/dup.ts': `export default (r: any) => { r.http.get('/x', async () => 1); r.http.get('/x', async () => 2); };`,
      },
      { start: false },
    );
    await expect(k3.start()).rejects.toMatchObject({ code: 'http.route_conflict' });
  });

  it('rejects unknown http config keys and wrong types', async () => {
    const { kernel } = await boot(
      { 'apps/web/app.config.ts': 'export default {};' },
      { config: "{ plugins: ['@mega/http'], http: { bodyLimit: -1, nope: true } }", start: false },
    );
    const error = await kernel.start().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.invalid' });
    expect((error as { details: { errors: Array<{ path: string }> } }).details.errors.map((e) => e.path).sort()).toEqual([
      '/http',
      '/http/bodyLimit',
    ]);
  });
});
