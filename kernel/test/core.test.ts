import type { PluginApi } from '@mega/kernel';
import { definePlugin, getApp } from '@mega/kernel';
import { buildPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isMegaError, MegaError, NotFoundError, statusForCode, toMegaError, ValidationError } from '../src/errors.js';

afterEach(() => stopAll());

describe('errors', () => {
  it('maps codes and subclasses to HTTP statuses', () => {
    expect(new MegaError('validation.failed', 'x').status).toBe(400);
    expect(new MegaError('asp.replay', 'x').status).toBe(401);
    expect(new MegaError('app.not_found', 'x').status).toBe(404);
    expect(new MegaError('codec.too_large', 'x').status).toBe(413);
    expect(new MegaError('bus.request_timeout', 'x').status).toBe(504);
    expect(new MegaError('db.unavailable', 'x').status).toBe(503);
    expect(new MegaError('something.else', 'x').status).toBe(500);
    expect(new NotFoundError('user.missing', 'x').status).toBe(404);
    expect(new ValidationError('any.code', 'x', { status: 422 }).status).toBe(422);
    expect(statusForCode('rate.limited')).toBe(429);
  });

  it('recognises errors across module copies by brand and wraps foreign errors', () => {
    const e = new MegaError('a.b', 'm', { details: { x: 1 } });
    expect(isMegaError(e)).toBe(true);
    expect(isMegaError({ code: 'a.b' })).toBe(false);
    expect(e.toJSON()).toEqual({ code: 'a.b', message: 'm', details: { x: 1 } });
    const wrapped = toMegaError(new TypeError('boom'));
    expect(wrapped).toMatchObject({ code: 'internal', message: 'boom', status: 500 });
    expect(toMegaError(e)).toBe(e);
  });
});

describe('app registry', () => {
  it('getApp reports not_found, not_initialized and ambiguous', async () => {
    const { kernel } = buildPlugins({ plugins: [], apps: { web: {}, admin: { hosts: ['Admin.Example.com'] } } });
    expect(() => getApp('web')).toThrow(expect.objectContaining({ code: 'app.not_found' }));
    const started = kernel.start();
    await started;
    expect(getApp('admin').hosts).toEqual(['admin.example.com']);
    expect(() => getApp()).toThrow(expect.objectContaining({ code: 'app.ambiguous' }));
    expect(() => getApp('nope')).toThrow(
      expect.objectContaining({ code: 'app.not_found', details: { known: expect.arrayContaining(['web', 'admin']) } }),
    );
    await kernel.stop();
    expect(() => getApp('web')).toThrow(expect.objectContaining({ code: 'app.not_found' }));
  });

  it('an app registered but still booting is not_initialized', async () => {
    let probe: unknown;
    const { kernel } = buildPlugins({
      plugins: [
        definePlugin({
          name: 'probe',
          version: '1.0.0',
          setup(api) {
            api.tap('boot', () => {
              try {
                getApp('booting');
              } catch (e) {
                probe = e;
              }
            });
          },
        }),
      ],
      apps: { booting: {} },
    });
    await kernel.start();
    expect(probe).toMatchObject({ code: 'app.not_initialized' });
    expect(getApp().name).toBe('booting');
    await kernel.stop();
  });
});

describe('services and ctx', () => {
  it('provide/use with a clear error for a missing service', async () => {
    let api: PluginApi | undefined;
    const cache = definePlugin({
      name: 'cache',
      version: '1.0.0',
      setup(a) {
        api = a;
        a.provide('cache', { hit: 1 });
      },
    });
    const { kernel } = buildPlugins({ plugins: [cache] });
    await kernel.start();
    expect(kernel.use<{ hit: number }>('cache').hit).toBe(1);
    expect(api?.use<{ hit: number }>('cache').hit).toBe(1);
    expect(api?.has('cache')).toBe(true);
    expect(() => kernel.use('db')).toThrow(
      expect.objectContaining({ code: 'service.missing', details: { name: 'db', provided: ['cache'] } }),
    );
    expect(() => api?.provide('cache', {})).toThrow(
      expect.objectContaining({ code: 'service.duplicate', details: { name: 'cache', by: 'cache' } }),
    );
    await kernel.stop();
    // A second plugin providing the same service fails its setup, naming the first provider.
    const rival = definePlugin({ name: 'rival', version: '1.0.0', setup: (a) => a.provide('cache', {}) });
    await expect(buildPlugins({ plugins: [cache, rival] }).kernel.start()).rejects.toMatchObject({
      code: 'service.duplicate',
      plugin: 'rival',
      hook: 'setup',
    });
  });

  it('registers health checks attributed to their plugin', async () => {
    const check = async () => undefined;
    const { kernel } = buildPlugins({
      plugins: [definePlugin({ name: 'db', version: '1.0.0', setup: (a) => a.health('db:main', check) })],
    });
    await kernel.start();
    expect(kernel.healthChecks()).toEqual([{ name: 'db:main', plugin: 'db', check }]);
  });

  it('ctx members are lazy, memoised per ctx, and untouched members cost nothing', async () => {
    const factory = vi.fn((ctx: { id: string }) => `db for ${ctx.id}`);
    let api: PluginApi | undefined;
    const { kernel } = buildPlugins({
      plugins: [
        definePlugin({
          name: 'db',
          version: '1.0.0',
          setup(a) {
            api = a;
            a.contributeCtx('db', factory as never);
          },
        }),
      ],
    });
    await kernel.start();
    const app = kernel.apps[0];
    if (!app) throw new Error('no app');
    const a = kernel.createContext(app, { id: 'r1' }) as unknown as { db: string; id: string };
    const b = kernel.createContext(app, { id: 'r2' }) as unknown as { db: string };
    expect(factory).not.toHaveBeenCalled();
    expect(a.db).toBe('db for r1');
    expect(a.db).toBe('db for r1');
    expect(factory).toHaveBeenCalledTimes(1);
    expect(b.db).toBe('db for r2');
    expect(Object.getPrototypeOf(a)).toBe(Object.getPrototypeOf(b));
    expect(() => api?.contributeCtx('late', () => 1)).toThrow(expect.objectContaining({ code: 'ctx.frozen' }));
    await kernel.stop();
  });
});

describe('mega start --watch path filter', () => {
  it('watches sources, config, templates and .env files; ignores dependencies, build output, runtime state and junk', async () => {
    const { isWatchedPath } = await import('../src/cli/watch.js');
    for (const p of [
      'mega.config.ts',
      'apps/web/routes/a.ts',
      'lib/x.mjs',
      'apps/web/locales/server/en.json',
      'views/a.eta',
      '.env',
      '.env.local',
      'apps\\web\\r.ts',
    ])
      expect([p, isWatchedPath(p)]).toEqual([p, true]);
    for (const p of [
      'node_modules/x/index.js',
      'kernel/dist/a.js',
      '.mega/pglite/primary/base.json',
      '.git/HEAD',
      'notes.txt',
      'a.ts~',
      '.a.ts.swp',
      'apps/web/public/logo.png',
      '',
      'env',
    ])
      expect([p, isWatchedPath(p)]).toEqual([p, false]);
  });
});
