import { mkdtempSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HeaderSet, HttpServer, Middleware, Send } from '@mega/http';
import { definePlugin } from '@mega/kernel';
import { type BootProjectOptions, bootProject, captureLogs, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../../scripts/test/procs.js';
import { headerBlocksWork } from '../src/headers.js';

/** Writes a project whose mega.config.ts exports `config` (TS source) and boots it with the test kit. */
const boot = (
  files: Record<string, string>,
  { config = "{ plugins: ['@mega/http'] }", ...options }: BootProjectOptions & { config?: string } = {},
) => bootProject(writeProject({ 'mega.config.ts': `export default ${config};\n`, ...files }, { prefix: 'mega-http-' }), options);

afterEach(stopAll);

const APP = { 'apps/web/app.config.ts': 'export default {};' };

describe('pipeline', () => {
  it('runs request, before, handler, transform and after with one ctx object, in order', async () => {
    const seen: string[] = [];
    const ctxs = new Set<unknown>();
    const tracer = definePlugin({
      name: 'tracer',
      version: '1.0.0',
      dependsOn: ['@mega/http'],
      setup(api) {
        api.tap('boot', async () => {
          const http = api.use<HttpServer>('http');
          http.use(
            ((_req, _reply, ctx) => {
              seen.push('plugin:request');
              ctxs.add(ctx);
            }) as Middleware,
            { phase: 'request' },
          );
          http.use((async (_req, _reply, ctx) => {
            seen.push('plugin:before');
            ctxs.add(ctx);
          }) as Middleware);
        });
      },
    });
    (globalThis as Record<string, unknown>).__seen = seen;
    (globalThis as Record<string, unknown>).__ctxs = ctxs;
    const { inject } = await boot(
      {
        ...APP,
        'apps/web/routes/a.ts': `
const seen = (globalThis as any).__seen; const ctxs = (globalThis as any).__ctxs;
export default (r: any) => {
  r.http.use({ before: (_q: any, _p: any, ctx: any) => { seen.push('app:before'); ctxs.add(ctx); },
               after: (_q: any, _p: any, ctx: any, result: any) => { seen.push('app:after ' + JSON.stringify(result)); ctxs.add(ctx); } });
  r.http.get('/p', async (_q: any, _p: any, ctx: any) => { seen.push('handler'); ctxs.add(ctx); return { n: 1 }; }, {
    before: [async (_q: any, _p: any, ctx: any) => { seen.push('route:before'); ctxs.add(ctx); }],
    transform: [(_q: any, _p: any, ctx: any, result: any) => { seen.push('route:transform'); ctxs.add(ctx); return { ...result, t: true }; }],
    after: [(_q: any, _p: any, ctx: any) => { seen.push('route:after'); ctxs.add(ctx); }],
  });
  r.http.get('/stop', async () => { seen.push('never'); return 1; }, {
    before: [(_q: any, reply: any) => reply.code(401).send({ error: { code: 'auth.required', message: 'log in' } })],
  });
};`,
        'apps/web/routes/b.ts': `export default (r: any) => { r.http.get('/other', async () => 'x'); };`,
      },
      { plugins: [tracer] },
    );
    const res = await inject('/p');
    expect(res.json).toEqual({ data: { n: 1, t: true } });
    // after middleware runs once the response is out
    for (let i = 0; i < 100 && !seen.includes('route:after'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([
      'plugin:request',
      'plugin:before',
      'app:before',
      'route:before',
      'handler',
      'route:transform',
      'app:after {"n":1,"t":true}',
      'route:after',
    ]);
    expect(ctxs.size).toBe(1);
    seen.length = 0;
    const stopped = await inject('/stop');
    expect([stopped.status, stopped.code]).toEqual([401, 'auth.required']);
    expect(seen).not.toContain('never');
    // App middleware declared in a.ts also runs for routes of b.ts.
    seen.length = 0;
    await inject('/other');
    expect(seen).toContain('app:before');
  });

  it('builds ctx members lazily: an untouched contribution never runs', async () => {
    let built = 0;
    const counter = definePlugin({
      name: 'counter',
      version: '1.0.0',
      setup(api) {
        api.contributeCtx('expensive', () => {
          built++;
          return 42;
        });
      },
    });
    const { inject } = await boot(
      {
        ...APP,
        'apps/web/routes/a.ts': `export default (r: any) => {
  r.http.get('/cold', async () => 'cold');
  r.http.get('/warm', async (_q: any, _p: any, ctx: any) => ctx.expensive + ctx.expensive);
};`,
      },
      { plugins: [counter] },
    );
    await inject('/cold');
    await inject('/cold');
    expect(built).toBe(0);
    expect((await inject('/warm')).json).toEqual({ data: 84 });
    expect(built).toBe(1);
  });

  it('runs send middleware on every response of the app, and parses declared bodyTypes only for their routes', async () => {
    const stamp = definePlugin({
      name: 'stamp',
      version: '1.0.0',
      dependsOn: ['@mega/http'],
      setup(api) {
        // Per-route behaviour through the route hook: /sealed takes a custom content type as text.
        api.tap('route', (route) =>
          route.path === '/sealed' ? { ...route, options: { ...route.options, bodyTypes: ['application/x-sealed'] } } : route,
        );
        api.tap('boot', () => {
          api.use<HttpServer>('http').use(((_req, reply, ctx) => void reply.header('x-stamp', ctx ? 'route' : 'none')) as Send, {
            phase: 'send',
          });
        });
      },
    });
    const { inject } = await boot(
      {
        ...APP,
        'apps/web/routes/a.ts': `export default (r: any) => {
  r.http.post('/sealed', async (req: any) => ({ body: req.body }));
  r.http.post('/plain', async (req: any) => ({ body: req.body }));
  r.http.get('/fail', async () => { throw new Error('x'); });
};`,
      },
      { plugins: [stamp] },
    );
    const sealed = await inject('/sealed', { method: 'POST', body: 'E:abc', headers: { 'content-type': 'application/x-sealed' } });
    expect([sealed.json, sealed.headers['x-stamp']]).toEqual([{ data: { body: 'E:abc' } }, 'route']);
    const plain = await inject('/plain', { method: 'POST', body: 'E:abc', headers: { 'content-type': 'application/x-sealed' } });
    expect([plain.status, plain.code]).toEqual([415, 'http.unsupported_media_type']);
    expect((await inject('/fail')).headers['x-stamp']).toBe('route');
    const missing = await inject('/nowhere');
    expect([missing.status, missing.headers['x-stamp']]).toEqual([404, 'none']);
  });

  it('adds header sets by content type to every response, once, over a header the route set itself', async () => {
    const sets = definePlugin({
      name: 'sets',
      version: '1.0.0',
      dependsOn: ['@mega/http'],
      setup(api) {
        api.tap('boot', () => {
          const http = api.use<HttpServer>('http');
          http.use(
            ((type: string | undefined) =>
              type?.startsWith('application/json')
                ? [
                    ['X-Frame-Options', 'DENY'],
                    ['x-kind', 'json'],
                  ]
                : [['x-kind', 'other']]) as HeaderSet,
            { phase: 'headers' },
          );
          // A later set overrides an earlier one's header of the same name.
          http.use((() => [['x-last', 'second']]) as HeaderSet, { phase: 'headers' });
          http.use((() => [['x-last', 'first']]) as HeaderSet, { phase: 'headers', apps: ['nobody'] });
        });
      },
    });
    const { inject } = await boot(
      {
        ...APP,
        'apps/web/routes/a.ts': `export default (r: any) => {
  r.http.get('/j', async () => ({ a: 1 }));
  r.http.get('/t', async () => 'text');
  r.http.get('/own', async (_q: any, reply: any) => { reply.header('x-frame-options', 'SAMEORIGIN'); return { a: 2 }; });
  r.http.get('/fail', async () => { throw new Error('x'); });
};`,
      },
      { plugins: [sets] },
    );
    const pick = (r: { status: number; headers: Record<string, unknown> }) => [
      r.status,
      r.headers['x-frame-options'],
      r.headers['x-kind'],
      r.headers['x-last'],
    ];
    expect(pick(await inject('/j'))).toEqual([200, 'DENY', 'json', 'second']);
    expect(pick(await inject('/t'))).toEqual([200, undefined, 'other', 'second']);
    // Node joins repeated headers with ", ": a single value means the route's own header gave way.
    expect(pick(await inject('/own'))).toEqual([200, 'DENY', 'json', 'second']);
    expect(pick(await inject('/fail'))).toEqual([500, 'DENY', 'json', 'second']);
    expect(pick(await inject('/nowhere'))).toEqual([404, 'DENY', 'json', 'second']);
  });

  it("writes header sets through this Node's head writer (else they fall back to reply.header)", () => {
    // Fails when a Node upgrade changes ServerResponse#_storeHeader: the sets then still go out, slower.
    expect(headerBlocksWork()).toBe(true);
  });

  it('validates body, query, params and headers with compiled schemas and caps the details at 20', async () => {
    const props = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}`, { type: 'integer' }]));
    const { inject } = await boot({
      ...APP,
      'apps/web/routes/a.ts': `export default (r: any) => {
  r.http.post('/many', async () => 'ok', { schema: { body: { type: 'object', properties: ${JSON.stringify(props)} } } });
  r.http.get('/q', async (req: any) => req.query, { schema: { query: { type: 'object', required: ['page'], properties: { page: { type: 'integer', minimum: 1 } } } } });
  r.http.get('/u/:id', async (req: any) => req.params, { schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]+$' } } } } });
  r.http.get('/h', async () => 'ok', { schema: { headers: { type: 'object', required: ['x-api-version'] } } });
};`,
    });
    const body = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}`, 'nope']));
    const many = await inject('/many', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    expect([many.status, many.code]).toEqual([400, 'validation.failed']);
    const error = many.json?.error as { details: Array<Record<string, unknown>>; message: string };
    expect(error.details).toHaveLength(20);
    expect(error.details[0]).toMatchObject({ in: 'body', path: '/f0', keyword: 'type', message: 'must be integer' });
    expect(error.message).toBe('body/f0 must be integer (and 29 more, 10 not listed)');
    const q = await inject('/q?page=0');
    expect([q.status, q.code, (q.error as { details: unknown[] }).details]).toEqual([
      400,
      'validation.failed',
      [{ in: 'querystring', path: '/page', message: 'must be >= 1', keyword: 'minimum', params: { comparison: '>=', limit: 1 } }],
    ]);
    expect((await inject('/q?page=2')).json).toEqual({ data: { page: 2 } });
    const missing = await inject('/q');
    expect((missing.error as { details: Array<{ path: string }> }).details[0]?.path).toBe('/page');
    expect((await inject('/u/abc')).code).toBe('validation.failed');
    expect((await inject('/u/12')).json).toEqual({ data: { id: '12' } });
    const h = await inject('/h');
    expect([h.status, (h.error as { details: Array<{ in: string }> }).details[0]?.in]).toEqual([400, 'headers']);
  });

  it('logs a failed request once with its request id; 500s hide the stack in production', async () => {
    const { logger, lines } = captureLogs();
    const { inject } = await boot(
      {
        ...APP,
        'apps/web/routes/a.ts': `import { ConflictError } from '@mega/kernel';
export default (r: any) => {
  r.http.get('/boom', async () => { throw new Error('db password is hunter2'); });
  r.http.get('/taken', async () => { throw new ConflictError('user.taken', 'name taken'); });
};`,
      },
      { env: 'production', logger },
    );
    const boom = await inject('/boom', { headers: { 'x-request-id': 'req-abc' } });
    expect([boom.status, boom.json]).toEqual([500, { error: { code: 'internal', message: 'internal server error' } }]);
    expect(boom.text).not.toContain('hunter2');
    const logged = lines.filter((l) => l.reqId === 'req-abc');
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ level: 50, code: 'internal', msg: 'request failed' });
    expect(logged[0]?.err).toMatchObject({ message: 'db password is hunter2' });
    const taken = await inject('/taken', { headers: { 'x-request-id': 'req-def' } });
    expect([taken.status, taken.code]).toEqual([409, 'user.taken']);
    expect(lines.filter((l) => l.reqId === 'req-def')).toHaveLength(1);
  });

  it('gives Fastify the kernel logger only with requestLogging: one line per request, req.log bound to the id', async () => {
    const { logger, lines } = captureLogs();
    const { inject } = await boot(
      {
        ...APP,
        'apps/web/routes/a.ts': `export default (r: any) => { r.http.get('/hi', async (req: any) => { req.log.info('from handler'); return 'hi'; }); };`,
      },
      { logger, config: `{ plugins: ['@mega/http'], server: { port: 0, host: '127.0.0.1' }, http: { requestLogging: true } }` },
    );
    await inject('/hi', { headers: { 'x-request-id': 'log-1' } });
    const mine = lines.filter((l) => l.reqId === 'log-1').map((l) => l.msg);
    expect(mine).toEqual(['incoming request', 'from handler', 'request completed']);
  });

  it('envelopes once and lets buffers, streams and non-JSON replies through', async () => {
    const { inject } = await boot({
      ...APP,
      'apps/web/routes/a.ts': `import { Readable } from 'node:stream';
export default (r: any) => {
  r.http.get('/env', async () => ({ data: { a: 1 } }));
  r.http.get('/null', async () => null);
  r.http.get('/num', async () => 7);
  r.http.get('/buf', async (_q: any, reply: any) => { reply.type('application/octet-stream'); return Buffer.from('bytes'); });
  r.http.get('/stream', async (_q: any, reply: any) => { reply.type('text/plain'); return Readable.from(['a', 'b']); });
  r.http.get('/html', async (_q: any, reply: any) => reply.type('text/html').send('<p>hi</p>'));
  r.http.get('/later', async (_q: any, reply: any) => { setTimeout(() => reply.send({ late: true }), 5); return reply; });
  r.http.get('/string-throw', async () => { throw 'not an Error'; });
};`,
    });
    expect((await inject('/env')).json).toEqual({ data: { a: 1 } });
    expect((await inject('/null')).json).toEqual({ data: null });
    expect((await inject('/num')).json).toEqual({ data: 7 });
    expect((await inject('/buf')).text).toBe('bytes');
    expect((await inject('/stream')).text).toBe('ab');
    expect((await inject('/later')).json).toEqual({ late: true });
    const thrown = await inject('/string-throw');
    expect([thrown.status, thrown.code]).toEqual([500, 'internal']);
    const html = await inject('/html');
    expect([html.text, html.headers['content-type']]).toEqual(['<p>hi</p>', 'text/html']);
  });
});

describe('vhost', () => {
  const VHOST = {
    'apps/admin/app.config.ts': `export default { hosts: ['admin.test'] };`,
    'apps/admin/routes/r.ts': `import { getApp } from '@mega/kernel';
export default (r: any) => {
  r.http.get('/', async (_q: any, _p: any, ctx: any) => ctx.app.name);
  r.http.get('/only-admin', async () => 'admin-only');
};`,
    'apps/site/app.config.ts': `export default { hosts: ['site.test', 'www.site.test'] };`,
    'apps/site/routes/r.ts': `import { whoIsAdmin } from '../lib.ts';
export default (r: any) => {
  r.http.get('/', async (_q: any, _p: any, ctx: any) => ctx.app.name);
  r.http.get('/cross', async () => whoIsAdmin());
};`,
    'apps/site/lib.ts': `import { getApp } from '@mega/kernel';\nexport const whoIsAdmin = () => ({ name: getApp('admin').name, hosts: getApp('admin').hosts });\n`,
  };

  it('routes by Host, answers 404 app.unknown_host without a default app, and never leaks routes across hosts', async () => {
    const { inject } = await boot(VHOST);
    expect((await inject('/', { host: 'admin.test' })).text).toBe('admin');
    expect((await inject('/', { host: 'WWW.site.test:8080' })).text).toBe('site');
    const unknown = await inject('/', { host: 'evil.test' });
    expect([unknown.status, unknown.code]).toEqual([404, 'app.unknown_host']);
    const weird = await inject('/', { host: 'a..b' });
    expect([weird.status, weird.code]).toEqual([404, 'app.unknown_host']);
    const leak = await inject('/only-admin', { host: 'site.test' });
    expect([leak.status, leak.code]).toEqual([404, 'not_found']);
    expect((await inject('/cross', { host: 'site.test' })).json).toEqual({ data: { name: 'admin', hosts: ['admin.test'] } });
    // Plugin routes (no app) answer on every host: probes often use the pod IP.
    expect((await inject('/health', { host: '10.0.0.7:3000' })).status).toBe(200);
  });

  it('sends unknown hosts to the default app when one exists', async () => {
    const { inject } = await boot({
      ...VHOST,
      'apps/site/app.config.ts': 'export default {};',
    });
    expect((await inject('/', { host: 'anything.test' })).text).toBe('site');
    expect((await inject('/', { host: 'admin.test' })).text).toBe('admin');
    expect((await inject('/only-admin', { host: 'anything.test' })).code).toBe('not_found');
  });

  it('refuses two apps claiming one host', async () => {
    await expect(
      boot({
        'apps/a/app.config.ts': `export default { hosts: ['x.test'] };`,
        'apps/b/app.config.ts': `export default { hosts: ['X.test'] };`,
      }),
    ).rejects.toMatchObject({ code: 'http.host_conflict' });
  });
});

describe('bodies, limits and static files (bad input keeps the server serving)', () => {
  const FILES = {
    ...APP,
    'apps/web/public/app.js': 'console.log("static");\n',
    'apps/web/public/.secret': 'dotfile\n',
    'apps/web/secret.txt': 'outside public\n',
    'apps/web/routes/a.ts': `export default (r: any) => {
  r.http.post('/form', async (req: any) => req.body);
  r.http.post('/json', async (req: any) => req.body);
  r.http.post('/upload', async (req: any) => ({ name: req.body.file.filename, size: (await req.body.file.toBuffer()).length, note: req.body.note.value }));
  r.http.get('/ping', async () => 'pong');
};`,
  };
  const CONFIG = `{ plugins: ['@mega/http'], server: { port: 0, host: '127.0.0.1' }, http: { bodyLimit: 1024, multipart: { fileSize: 2048, files: 1 } } }`;

  function multipart(parts: Array<{ name: string; value: string; filename?: string }>) {
    const boundary = 'XmegaBoundary';
    const body = `${parts
      .map(
        (p) =>
          `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"\r\nContent-Type: application/octet-stream` : ''}\r\n\r\n${p.value}\r\n`,
      )
      .join('')}--${boundary}--\r\n`;
    return { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
  }

  it('parses forms and multipart, answers each bad input with its exact status and code', async () => {
    const { inject } = await boot(FILES, { config: CONFIG });
    const ping = async () => expect((await inject('/ping')).text).toBe('pong');
    const form = await inject('/form', {
      method: 'POST',
      body: 'a=1&b=two',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.json).toEqual({ data: { a: '1', b: 'two' } });
    const cases: Array<[string, Parameters<typeof inject>[1], number, string]> = [
      ['/json', { method: 'POST', body: '{"a":', headers: { 'content-type': 'application/json' } }, 400, 'http.invalid_json'],
      ['/json', { method: 'POST', body: '', headers: { 'content-type': 'application/json' } }, 400, 'http.invalid_json'],
      ['/json', { method: 'POST', body: '<a/>', headers: { 'content-type': 'application/xml' } }, 415, 'http.unsupported_media_type'],
      [
        '/json',
        { method: 'POST', body: JSON.stringify({ x: 'y'.repeat(2000) }), headers: { 'content-type': 'application/json' } },
        413,
        'http.body_too_large',
      ],
      [
        '/form',
        { method: 'POST', body: `a=${'z'.repeat(2000)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
        413,
        'http.body_too_large',
      ],
      [
        '/upload',
        { method: 'POST', ...multipart([{ name: 'file', value: 'q'.repeat(5000), filename: 'big.bin' }]) },
        413,
        'http.file_too_large',
      ],
      [
        '/upload',
        {
          method: 'POST',
          ...multipart([
            { name: 'file', value: 'a', filename: 'a.bin' },
            { name: 'file2', value: 'b', filename: 'b.bin' },
          ]),
        },
        413,
        'http.too_many_files',
      ],
      ['/upload', { method: 'POST', body: 'garbage', headers: { 'content-type': 'multipart/form-data' } }, 400, 'http.invalid_multipart'],
      [
        '/upload',
        { method: 'POST', body: '--XmegaBoundary\r\nbroken', headers: { 'content-type': 'multipart/form-data; boundary=XmegaBoundary' } },
        400,
        'http.invalid_multipart',
      ],
    ];
    for (const [path, init, status, code] of cases) {
      const res = await inject(path, init);
      expect([path, res.status, res.code]).toEqual([path, status, code]);
      await ping();
    }
    const upload = await inject('/upload', {
      method: 'POST',
      ...multipart([
        { name: 'note', value: 'hello' },
        { name: 'file', value: 'f'.repeat(100), filename: 'ok.bin' },
      ]),
    });
    expect(upload.json).toEqual({ data: { name: 'ok.bin', size: 100, note: 'hello' } });
  });

  it('streams uploaded files to private temporary files, deleted when the response closes; memory storage on request', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'mega-uploads-test-'));
    const routes = `import { existsSync, statSync } from 'node:fs';
export default (r: any) => {
  r.http.post('/upload', async (req: any) => {
    const f = req.body.file;
    const chunks: Buffer[] = [];
    for await (const c of f.stream()) chunks.push(c);
    return { path: f.path ?? null, exists: f.path ? existsSync(f.path) : null, mode: f.path ? statSync(f.path).mode & 0o777 : null, size: f.size, text: (await f.toBuffer()).toString(), streamed: Buffer.concat(chunks).toString(), note: req.body.note.value };
  });
  r.http.post('/fail', async (req: any) => { throw new Error('handler failed after ' + req.body.file.size + ' bytes'); });
};`;
    const config = (multipart: string) =>
      `{ plugins: ['@mega/http'], server: { port: 0, host: '127.0.0.1' }, logger: { level: 'silent' }, http: { multipart: ${multipart} } }`;
    const body = multipart([
      { name: 'note', value: 'hi' },
      { name: 'file', value: 'x'.repeat(300_000), filename: 'big.bin' },
    ]);
    const disk = await boot(
      { ...FILES, 'apps/web/routes/a.ts': routes },
      { config: config(`{ fileSize: 1000000, tmpDir: ${JSON.stringify(tmp)} }`) },
    );
    const res = await disk.inject('/upload', { method: 'POST', ...body });
    expect(res.status).toBe(200);
    const { path, exists, mode, size, text, streamed, note } = res.data;
    expect([exists, mode, size, note]).toEqual([true, 0o600, 300_000, 'hi']);
    expect(path.startsWith(tmp)).toBe(true);
    expect([text.length, streamed.length]).toEqual([300_000, 300_000]);
    await until(() => (readdirSync(tmp).length === 0 ? true : undefined), 5000, 'the temporary file deleted');
    // A failing handler, a file over the limit: nothing stays behind either.
    expect((await disk.inject('/fail', { method: 'POST', ...body })).status).toBe(500);
    const tooBig = multipart([{ name: 'file', value: 'y'.repeat(2_000_000), filename: 'huge.bin' }]);
    expect((await disk.inject('/upload', { method: 'POST', ...tooBig })).code).toBe('http.file_too_large');
    await until(() => (readdirSync(tmp).length === 0 ? true : undefined), 5000, 'no temporary file left');
    // A client that disconnects halfway through a file.
    const half = body.body.slice(0, 150_000);
    const socket = connect(disk.port, '127.0.0.1');
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(
      `POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${body.headers['content-type']}\r\nContent-Length: ${Buffer.byteLength(body.body)}\r\n\r\n${half}`,
    );
    await until(() => (readdirSync(tmp).length === 1 ? true : undefined), 5000, 'the upload spooling');
    socket.destroy();
    await until(() => (readdirSync(tmp).length === 0 ? true : undefined), 5000, 'the aborted upload deleted');
    await stopAll();

    const memory = await boot(
      { ...FILES, 'apps/web/routes/a.ts': routes },
      { config: config(`{ storage: 'memory', tmpDir: ${JSON.stringify(tmp)} }`) },
    );
    const inMemory = await memory.inject('/upload', { method: 'POST', ...body });
    expect(inMemory.data).toMatchObject({ path: null, size: 300_000, note: 'hi' });
    expect([inMemory.data.text.length, inMemory.data.streamed.length]).toEqual([300_000, 300_000]);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('serves apps/<app>/public under /static and refuses path traversal', async () => {
    const { inject } = await boot(FILES, { config: CONFIG });
    const file = await inject('/static/app.js');
    expect([file.status, file.text]).toEqual([200, 'console.log("static");\n']);
    for (const path of [
      '/static/../secret.txt',
      '/static/%2e%2e/secret.txt',
      '/static/..%2fsecret.txt',
      '/static/.secret',
      '/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
    ]) {
      const res = await inject(path);
      expect([path, res.status, res.code]).toEqual([path, 403, 'http.forbidden']);
      expect(res.text).not.toContain('outside public');
    }
    expect((await inject('/static/nope.js')).code).toBe('not_found');
    expect((await inject('/ping')).text).toBe('pong');
  });
});

describe('route conflicts', () => {
  it('reports a duplicate body route (registered in the multipart context) with http.route_conflict', async () => {
    await expect(
      boot({
        ...APP,
        'apps/web/routes/a.ts': `export default (r: any) => { r.http.post('/x', async () => 1); r.http.post('/x', async () => 2); };`,
      }),
    ).rejects.toMatchObject({ code: 'http.route_conflict', plugin: '@mega/http' });
  });
});

describe('raw protocol abuse', () => {
  it('keeps serving after a request with a malformed Host header and a garbage request line', async () => {
    const { port, inject } = await boot({
      ...APP,
      'apps/web/routes/a.ts': `export default (r: any) => { r.http.get('/ping', async () => 'pong'); };`,
    });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/ping', headers: { host: 'bad host\u0001' }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(-1));
      req.end();
      setTimeout(() => reject(new Error('no answer')), 3000);
    }).catch(() => -1);
    expect([400, -1]).toContain(status);
    expect((await inject('/ping')).text).toBe('pong');
  });
});
