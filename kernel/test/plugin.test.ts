import type { AnyPlugin, PluginApi, PluginDefinition } from '@mega/kernel';
import { definePlugin, KERNEL_VERSION, orderPlugins, Type } from '@mega/kernel';
import { buildPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';

afterEach(() => stopAll());

const p = (name: string, dependsOn: string[] = [], extra: Partial<PluginDefinition> = {}): AnyPlugin =>
  definePlugin({ name, version: '1.0.0', dependsOn, setup() {}, ...extra });

/** orderPlugins collects problems (boot reports them with every other one); the first is what boot throws. */
function problemsOf(plugins: AnyPlugin[]): Error[] {
  const problems: Error[] = [];
  orderPlugins(plugins, problems);
  return problems;
}

describe('plugin loader', () => {
  it('orders a diamond with each dependency once, before its dependents', () => {
    const order = orderPlugins([p('top', ['left', 'right']), p('left', ['base']), p('right', ['base']), p('base')]).map((x) => x.name);
    expect(order).toEqual(['base', 'left', 'right', 'top']);
  });

  it('rejects a cycle and names it', () => {
    expect(problemsOf([p('a', ['b']), p('b', ['c']), p('c', ['a'])])).toEqual([
      expect.objectContaining({
        code: 'plugin.cycle',
        message: 'plugin dependency cycle: a -> b -> c -> a',
        details: { cycle: ['a', 'b', 'c', 'a'] },
      }),
    ]);
    expect(problemsOf([p('self', ['self'])])).toEqual([expect.objectContaining({ code: 'plugin.cycle' })]);
  });

  it('rejects a missing dependency naming plugin and dependency', () => {
    expect(problemsOf([p('ws-presence', ['@mega/ws'])])).toEqual([
      expect.objectContaining({ code: 'plugin.missing_dependency', details: { plugin: 'ws-presence', missing: '@mega/ws' } }),
    ]);
  });

  it('rejects duplicates and malformed definitions', () => {
    expect(problemsOf([p('x'), p('x')])).toEqual([expect.objectContaining({ code: 'plugin.duplicate' })]);
    expect(() => definePlugin({ name: '', version: '1', setup() {} })).toThrow(expect.objectContaining({ code: 'plugin.invalid' }));
    expect(() => definePlugin({ name: 'n', version: '1' } as unknown as PluginDefinition)).toThrow(
      expect.objectContaining({ code: 'plugin.invalid' }),
    );
  });

  it('fails boot on a cycle before any setup ran', async () => {
    let setupRan = false;
    const mark = () => {
      setupRan = true;
    };
    const { kernel } = buildPlugins({ plugins: [p('a', ['b'], { setup: mark }), p('b', ['a'], { setup: mark })] });
    await expect(kernel.start()).rejects.toMatchObject({ code: 'plugin.cycle' });
    expect(setupRan).toBe(false);
  });

  it('checks the kernel semver range before setup', async () => {
    let setupRan = false;
    const { kernel } = buildPlugins({
      plugins: [
        definePlugin({
          name: 'future',
          version: '1.0.0',
          kernel: '^2.0.0',
          setup() {
            setupRan = true;
          },
        }),
      ],
    });
    await expect(kernel.start()).rejects.toMatchObject({
      code: 'plugin.kernel_range',
      details: { required: '^2.0.0', actual: kernel.version },
    });
    expect(setupRan).toBe(false);
  });
});

describe('plugin config schemas', () => {
  const CfgSchema = Type.Object({
    cfg: Type.Object(
      {
        size: Type.Optional(Type.Integer({ minimum: 1 })),
        mode: Type.Optional(Type.String({ enum: ['a', 'b'] })),
        retries: Type.Integer({ default: 3 }),
      },
      { additionalProperties: false, default: {} },
    ),
  });

  it('validates plugin config with every error and its path, and applies defaults', async () => {
    let seen: unknown;
    const make = () =>
      definePlugin({
        name: 'cfg',
        version: '1.0.0',
        config: { global: CfgSchema },
        setup(_api, config) {
          seen = config.cfg;
        },
      });
    const bad = buildPlugins({ plugins: [make()], config: { cfg: { size: 0, mode: 'c', extra: true } } });
    const error = await bad.kernel.start().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.invalid', details: { plugin: 'cfg', file: 'mega.config.ts' } });
    const errors = (error as { details: { errors: Array<{ path: string }> } }).details.errors.map((e) => e.path).sort();
    expect(errors).toEqual(['/cfg', '/cfg/mode', '/cfg/size']);

    const good = buildPlugins({ plugins: [make()], config: { cfg: { size: 2 } } });
    await good.kernel.start();
    expect(seen).toEqual({ size: 2, retries: 3 });
    // Defaults reach setup when the key is absent, and never leak into the user's config object.
    const given = { cfg: {} };
    await buildPlugins({ plugins: [make()], config: given }).kernel.start();
    expect(seen).toEqual({ retries: 3 });
    expect(given.cfg).toEqual({});
    await buildPlugins({ plugins: [make()] }).kernel.start();
    expect(seen).toEqual({ retries: 3 });
  });

  it('keeps app-scoped plugin config out of mega.config.ts and validates it per app', async () => {
    let api: PluginApi<{ sess: { ttl: number } }> | undefined;
    const make = () =>
      definePlugin({
        name: 'sess',
        version: '1.0.0',
        config: { app: Type.Object({ sess: Type.Object({ ttl: Type.Integer({ default: 60 }) }, { default: {} }) }) },
        setup(a) {
          api = a;
        },
      });
    const wrong = buildPlugins({ plugins: [make()], config: { sess: {} } });
    await expect(wrong.kernel.start()).rejects.toMatchObject({
      code: 'config.scope_violation',
      details: { key: 'sess', file: 'mega.config.ts' },
    });
    const right = buildPlugins({ plugins: [make()], apps: { scoped: { sess: { ttl: 5 } }, plain: {} } });
    await right.kernel.start();
    expect(api?.appConfig('scoped')).toEqual({ sess: { ttl: 5 } });
    expect(api?.appConfig('plain')).toEqual({ sess: { ttl: 60 } });
    const app = right.kernel.apps.find((a) => a.name === 'scoped');
    if (!app) throw new Error('no app');
    expect(api?.appConfig(app).sess.ttl).toBe(5);
  });

  it("refuses a global key in an app config (scope from the declarations, the kernel's own included)", async () => {
    const global = definePlugin({
      name: 'ws-like',
      version: '1.0.0',
      config: { global: Type.Object({ ws: Type.Optional(Type.Object({})) }) },
      setup() {},
    });
    const b = buildPlugins({ plugins: [global], apps: { web: { ws: {} } } });
    const error = await b.kernel.start().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.scope_violation', details: { key: 'ws', belongsIn: 'mega.config.ts' } });
    expect((error as Error).message).toContain('"ws" (ws-like) is not allowed in apps/web/app.config.ts; it belongs in mega.config.ts');
    const kernelKey = buildPlugins({ plugins: [], apps: { web: { plugins: [] } } });
    await expect(kernelKey.kernel.start()).rejects.toMatchObject({
      code: 'config.scope_violation',
      details: { key: 'plugins', belongsIn: 'mega.config.ts' },
    });
  });

  it('fails an unknown key with config.unknown_key and the closest known key', async () => {
    const b = buildPlugins({ plugins: [], config: { sever: { port: 80 } } });
    const error = await b.kernel.start().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.unknown_key', details: { key: 'sever', file: 'mega.config.ts', suggestion: 'server' } });
    expect((error as Error).message).toContain('did you mean "server"?');
    // A plugin's declared keys are known too, in app configs as well.
    const sess = definePlugin({
      name: 'sess',
      version: '1.0.0',
      config: { app: Type.Object({ session: Type.Optional(Type.Object({})) }) },
      setup() {},
    });
    await expect(buildPlugins({ plugins: [sess], apps: { web: { sesion: {} } } }).kernel.start()).rejects.toMatchObject({
      code: 'config.unknown_key',
      details: { key: 'sesion', suggestion: 'session' },
    });
    // Nothing close: no suggestion.
    const far = await buildPlugins({ plugins: [], config: { zzzzzzzz: 1 } })
      .kernel.start()
      .catch((e: unknown) => e);
    expect((far as { details: Record<string, unknown> }).details.suggestion).toBeUndefined();
  });

  it('refuses two plugins declaring the same key', async () => {
    const a = definePlugin({
      name: 'a',
      version: '1.0.0',
      config: { global: Type.Object({ shared: Type.Optional(Type.String()) }) },
      setup() {},
    });
    const b = definePlugin({
      name: 'b',
      version: '1.0.0',
      config: { global: Type.Object({ shared: Type.Optional(Type.String()) }) },
      setup() {},
    });
    await expect(buildPlugins({ plugins: [a, b] }).kernel.start()).rejects.toMatchObject({
      code: 'plugin.config_conflict',
      details: { key: 'shared', plugins: ['a', 'b'] },
    });
  });

  it('reports every problem together, before any plugin ran setup', async () => {
    const setups: string[] = [];
    const spy = (name: string, extra: Partial<PluginDefinition> = {}) =>
      definePlugin({ name, version: '1.0.0', setup: () => void setups.push(name), ...extra });
    const b = buildPlugins({
      plugins: [
        spy('fine'),
        spy('future', { kernel: '^9.0.0' }),
        spy('needy', { dependsOn: ['@mega/absent'] }),
        spy('typed', { config: { global: CfgSchema } }),
      ],
      config: { sever: {}, cfg: { size: -1 }, hosts: ['x.example'] },
      services: { dbs: { main: { driver: 'postgres' } } },
    });
    const error = await b.kernel.start().catch((e: unknown) => e);
    expect(setups).toEqual([]);
    const codes = (error as { details: { problems: Array<{ code: string }> } }).details.problems.map((x) => x.code);
    expect(codes).toEqual(
      expect.arrayContaining([
        'plugin.missing_dependency',
        'plugin.kernel_range',
        'config.unknown_key',
        'config.scope_violation',
        'config.invalid',
        'adapter.unknown_driver',
      ]),
    );
    // The first problem's code is the error's code; the message lists them all.
    expect(error).toMatchObject({ code: codes[0] });
    expect((error as Error).message).toMatch(/^6 problems stop boot:\n {2}- \[/);
    expect(KERNEL_VERSION).toBe(b.kernel.version);
  });
});

describe('declared drivers', () => {
  const db = definePlugin({
    name: 'db-fake',
    version: '1.0.0',
    drivers: { dbs: ['fakedb'] },
    setup(api) {
      api.provide('seen', api.services('dbs'));
    },
  });

  it('fails a service whose driver no loaded plugin declares, naming the known ones', async () => {
    const b = buildPlugins({ plugins: [db], services: { dbs: { main: { driver: 'postgres' } } } });
    const error = await b.kernel.start().catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'adapter.unknown_driver',
      details: { kind: 'dbs', alias: 'main', driver: 'postgres', known: ['fakedb'] },
    });
    const none = buildPlugins({ plugins: [], services: { caches: { default: { driver: 'redis' } } } });
    await expect(none.kernel.start()).rejects.toMatchObject({ code: 'adapter.unknown_driver', details: { known: [] } });
  });

  it('hands each plugin the services whose driver it declared', async () => {
    const other = definePlugin({ name: 'db-other', version: '1.0.0', drivers: { dbs: ['otherdb'] }, setup() {} });
    const b = buildPlugins({
      plugins: [db, other],
      services: { dbs: { main: { driver: 'fakedb', url: 'fake://a' }, side: { driver: 'otherdb' }, spare: { driver: 'fakedb' } } },
    });
    await b.kernel.start();
    expect(b.kernel.use('seen')).toEqual([
      ['main', { driver: 'fakedb', url: 'fake://a' }],
      ['spare', { driver: 'fakedb' }],
    ]);
  });
});
