import type { AnyPlugin, PluginApi, PluginDefinition } from '@mega/kernel';
import { definePlugin, MegaError, PluginError } from '@mega/kernel';
import { buildPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';

afterEach(() => stopAll());

const plugin = (name: string, dependsOn: string[], setup: (api: PluginApi) => void, extra: Partial<PluginDefinition> = {}): AnyPlugin =>
  definePlugin({ name, version: '1.0.0', dependsOn, setup, ...extra });
const kernelOf = (plugins: AnyPlugin[], config = {}) => buildPlugins({ plugins, config }).kernel;

describe('hooks', () => {
  it('runs setup and boot taps in dependency order, shutdown in reverse', async () => {
    const events: string[] = [];
    const make = (name: string, deps: string[]) =>
      plugin(name, deps, (api) => {
        events.push(`setup ${name}`);
        api.tap('boot', async () => {
          events.push(`boot ${name}`);
        });
        api.onShutdown(async () => {
          events.push(`shutdown ${name}`);
        });
      });
    // Listed out of order on purpose: the loader orders by dependencies.
    const kernel = kernelOf([make('c', ['b']), make('a', []), make('b', ['a'])]);
    await kernel.start();
    expect(kernel.state).toBe('running');
    await kernel.stop();
    expect(events).toEqual(['setup a', 'setup b', 'setup c', 'boot a', 'boot b', 'boot c', 'shutdown c', 'shutdown b', 'shutdown a']);
  });

  it('sets up an `after` plugin after the named one when it is loaded, and without it when it is not', async () => {
    const events: string[] = [];
    const make = (name: string, after: string[] = []) => plugin(name, [], () => void events.push(name), { after });
    await kernelOf([make('consumer', ['owner']), make('owner')]).start();
    expect(events).toEqual(['owner', 'consumer']);
    events.length = 0;
    await kernelOf([make('consumer', ['owner'])]).start();
    expect(events).toEqual(['consumer']);
  });

  it('rethrows a boot error with plugin and hook name as internal, keeping the cause; a MegaError keeps its code', async () => {
    const cause = new Error('database exploded');
    const kernel = kernelOf([
      plugin('db', [], (api) => {
        api.tap('boot', async () => {
          throw cause;
        });
      }),
    ]);
    const error = await kernel.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PluginError);
    expect(error).toMatchObject({ code: 'internal', plugin: 'db', hook: 'boot', cause });
    expect((error as Error).message).toContain('[db] boot: database exploded');

    const deliberate = kernelOf([
      plugin('db', [], (api) => {
        api.tap('boot', () => {
          throw new MegaError('adapter.unavailable', 'no database at localhost:5432');
        });
      }),
    ]);
    await expect(deliberate.start()).rejects.toMatchObject({ code: 'adapter.unavailable', plugin: 'db', hook: 'boot' });
  });

  it('wraps setup errors and sync route-tap errors the same way', async () => {
    const bad = kernelOf([
      plugin('p', [], () => {
        throw new Error('nope');
      }),
    ]);
    await expect(bad.start()).rejects.toMatchObject({ plugin: 'p', hook: 'setup' });

    const k = kernelOf([
      plugin('router', [], (api) => {
        api.tap('route', () => {
          throw new Error('bad route');
        });
      }),
    ]);
    await k.start();
    const app = k.apps[0];
    if (!app) throw new Error('no app');
    expect(() => k.hooks.route.call({ kind: 'http', app, method: 'GET', path: '/', handler: () => 1, options: {}, meta: {} })).toThrow(
      expect.objectContaining({ code: 'internal', plugin: 'router', hook: 'route' }),
    );
    await k.stop();
  });

  it('stops a boot that exceeds the plugin timeout with plugin.boot_timeout and shuts down the others', async () => {
    const stopped: string[] = [];
    const kernel = kernelOf([
      plugin('fine', [], (api) => {
        api.onShutdown(async () => {
          stopped.push('fine');
        });
      }),
      plugin(
        'slow',
        ['fine'],
        (api) => {
          api.tap('boot', () => new Promise(() => {}));
        },
        { bootTimeoutMs: 50 },
      ),
    ]);
    await expect(kernel.start()).rejects.toMatchObject({ code: 'plugin.boot_timeout', plugin: 'slow', hook: 'boot' });
    expect(stopped).toEqual(['fine']);
  });

  it('bounds each shutdown step and keeps going after a failing or hung one', async () => {
    const ran: string[] = [];
    const kernel = kernelOf(
      [
        plugin('a', [], (api) => api.onShutdown(async () => void ran.push('a'))),
        plugin('b', ['a'], (api) => api.onShutdown(() => new Promise(() => {}))),
        plugin('c', ['b'], (api) =>
          api.onShutdown(async () => {
            ran.push('c');
            throw new Error('c failed');
          }),
        ),
      ],
      { lifecycle: { shutdownTimeoutMs: 50 } },
    );
    await kernel.start();
    const t0 = Date.now();
    await kernel.stop();
    expect(ran).toEqual(['c', 'a']);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(kernel.state).toBe('stopped');
  });

  it('refuses taps once the kernel runs, and the hooks object is frozen', async () => {
    let api: PluginApi | undefined;
    const kernel = kernelOf([
      plugin('late', [], (a) => {
        api = a;
      }),
    ]);
    await kernel.start();
    // Untapped hooks report unused, so hot paths can skip building their arguments.
    expect(kernel.hooks.wsMessage.isUsed()).toBe(false);
    expect(kernel.hooks.route.isUsed()).toBe(false);
    expect(Object.isFrozen(kernel.hooks)).toBe(true);
    expect(() => kernel.hooks.boot.tap('late', () => {})).toThrow(expect.objectContaining({ code: 'hooks.frozen' }));
    expect(() => api?.tap('boot', () => {})).toThrow(expect.objectContaining({ code: 'hooks.frozen' }));
    await kernel.stop();
  });

  it('refuses a tap whose name is not a loaded plugin (hooks.unknown_tap)', async () => {
    const kernel = kernelOf([
      plugin('honest', [], (api) => {
        api.kernel.hooks.boot.tap('ghost', () => {});
      }),
    ]);
    const error = await kernel.start().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'hooks.unknown_tap', plugin: 'honest', hook: 'setup', details: { tap: 'ghost', hook: 'boot' } });
  });

  it('wsMessage bails with the MegaError a tap returns; `before` orders a tap ahead of another plugin; presence taps run in parallel', async () => {
    const order: string[] = [];
    const kernel = kernelOf([
      // The parser is set up first, yet `before: 'parser'` puts the decrypting tap ahead of it.
      plugin('parser', [], (api) => {
        api.tap('wsMessage', async (frame) => {
          order.push(`parse ${String(frame.data)}`);
          return undefined;
        });
      }),
      plugin('asp', [], (api) => {
        api.tap(
          'wsMessage',
          async (frame) => {
            if (frame.data === 'plain') return new MegaError('asp.signal', 'plain frame in encrypted namespace');
            frame.data = 'decrypted';
            return undefined;
          },
          { before: 'parser' },
        );
      }),
      plugin('slow', [], (api) => api.tap('presence', () => new Promise<void>((r) => setTimeout(() => r(void order.push('slow')), 30)))),
      plugin('fast', [], (api) => api.tap('presence', async () => void order.push('fast'))),
    ]);
    await kernel.start();
    const app = kernel.apps[0];
    if (!app) throw new Error('no app');
    const rejected = await kernel.hooks.wsMessage.promise({ app, connection: null, data: 'plain', ns: '/ws' });
    expect(rejected).toMatchObject({ code: 'asp.signal' });
    const passed = await kernel.hooks.wsMessage.promise({ app, connection: null, data: 'E:xyz', ns: '/ws' });
    expect(passed).toBeUndefined();
    await kernel.hooks.presence.promise({ kind: 'leave', app, ns: '/ws', sessionId: 's1' });
    expect(order).toEqual(['parse decrypted', 'fast', 'slow']);
    await kernel.stop();
  });

  it('a throwing wsMessage tap is internal with plugin and hook, never its raw message as a code', async () => {
    const kernel = kernelOf([
      plugin('buggy', [], (api) =>
        api.tap('wsMessage', () => {
          throw new TypeError('cannot read properties of undefined');
        }),
      ),
    ]);
    await kernel.start();
    const app = kernel.apps[0];
    if (!app) throw new Error('no app');
    await expect(kernel.hooks.wsMessage.promise({ app, connection: null, data: 'x', ns: '/ws' })).rejects.toMatchObject({
      code: 'internal',
      plugin: 'buggy',
      hook: 'wsMessage',
    });
    await kernel.stop();
  });
});
