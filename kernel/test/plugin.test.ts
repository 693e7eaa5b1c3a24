import { describe, expect, it } from 'vitest';
import type { PluginDefinition } from '../src/plugin.js';
import { definePlugin, orderPlugins } from '../src/plugin.js';
import { testKernel } from './helpers.js';

const p = (name: string, dependsOn: string[] = [], extra: Partial<PluginDefinition> = {}) =>
  definePlugin({ name, version: '1.0.0', dependsOn, setup() {}, ...extra });

describe('plugin loader', () => {
  it('orders a diamond with each dependency once, before its dependents', () => {
    const order = orderPlugins([p('top', ['left', 'right']), p('left', ['base']), p('right', ['base']), p('base')]).map((x) => x.name);
    expect(order).toEqual(['base', 'left', 'right', 'top']);
  });

  it('rejects a cycle and names it', () => {
    expect(() => orderPlugins([p('a', ['b']), p('b', ['c']), p('c', ['a'])])).toThrow(
      expect.objectContaining({
        code: 'plugin.cycle',
        message: 'plugin dependency cycle: a -> b -> c -> a',
        details: { cycle: ['a', 'b', 'c', 'a'] },
      }),
    );
    expect(() => orderPlugins([p('self', ['self'])])).toThrow(expect.objectContaining({ code: 'plugin.cycle' }));
  });

  it('rejects a missing dependency naming plugin and dependency', () => {
    expect(() => orderPlugins([p('ws-presence', ['@mega/ws'])])).toThrow(
      expect.objectContaining({ code: 'plugin.missing_dependency', details: { plugin: 'ws-presence', missing: '@mega/ws' } }),
    );
  });

  it('rejects duplicates and malformed definitions', () => {
    expect(() => orderPlugins([p('x'), p('x')])).toThrow(expect.objectContaining({ code: 'plugin.duplicate' }));
    expect(() => definePlugin({ name: '', version: '1', setup() {} })).toThrow(expect.objectContaining({ code: 'plugin.invalid' }));
    expect(() => definePlugin({ name: 'n', version: '1' } as unknown as PluginDefinition)).toThrow(
      expect.objectContaining({ code: 'plugin.invalid' }),
    );
  });

  it('checks the kernel semver range before setup', async () => {
    let setupRan = false;
    const kernel = testKernel([
      definePlugin({
        name: 'future',
        version: '1.0.0',
        kernel: '^2.0.0',
        setup() {
          setupRan = true;
        },
      }),
    ]);
    await expect(kernel.start()).rejects.toMatchObject({
      code: 'plugin.kernel_range',
      details: { required: '^2.0.0', actual: kernel.version },
    });
    expect(setupRan).toBe(false);
  });

  it('validates plugin config with every error and its path, and applies defaults', async () => {
    const schema = {
      type: 'object',
      additionalProperties: false,
      properties: { size: { type: 'integer', minimum: 1 }, mode: { enum: ['a', 'b'] }, retries: { type: 'integer', default: 3 } },
    };
    let seen: unknown;
    const make = () =>
      definePlugin<{ size?: number; retries: number }>({
        name: 'cfg',
        version: '1.0.0',
        configKey: 'cfg',
        configSchema: schema,
        setup(_k, config) {
          seen = config;
        },
      });
    const bad = testKernel([make()], { config: { cfg: { size: 0, mode: 'c', extra: true } } as never });
    const error = await bad.start().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.invalid' });
    const errors = (error as { details: { errors: Array<{ path: string }> } }).details.errors.map((e) => e.path).sort();
    expect(errors).toEqual(['/cfg', '/cfg/mode', '/cfg/size']);

    const good = testKernel([make()], { config: { cfg: { size: 2 } } as never });
    await good.start();
    expect(seen).toEqual({ size: 2, retries: 3 });
    await good.stop();
  });

  it('keeps app-scoped plugin config out of mega.config.ts and validates it per app', async () => {
    const make = () =>
      definePlugin({
        name: 'sess',
        version: '1.0.0',
        configKey: 'sess',
        configScope: 'app',
        configSchema: { type: 'object', properties: { ttl: { type: 'integer', default: 60 } } },
        setup() {},
      });
    const wrong = testKernel([make()], { config: { sess: {} } as never });
    await expect(wrong.start()).rejects.toMatchObject({ code: 'config.scope_violation', details: { key: 'sess', file: 'mega.config.ts' } });
    const right = testKernel([make()], { apps: [{ name: 'scoped', dir: '/tmp', config: { sess: { ttl: 5 } } as never, file: undefined }] });
    await right.start();
    expect(right.appConfig('scoped', 'sess')).toEqual({ ttl: 5 });
    await right.stop();
  });
});
