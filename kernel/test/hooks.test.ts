import { describe, expect, it } from 'vitest';
import { PluginError } from '../src/errors.js';
import type { PluginDefinition } from '../src/plugin.js';
import { definePlugin } from '../src/plugin.js';
import { testKernel } from './helpers.js';

const plugin = (name: string, dependsOn: string[], setup: PluginDefinition['setup'], extra: Partial<PluginDefinition> = {}) =>
  definePlugin({ name, version: '1.0.0', dependsOn, setup, ...extra });

describe('hooks', () => {
  it('runs setup and boot taps in dependency order, shutdown in reverse', async () => {
    const events: string[] = [];
    const make = (name: string, deps: string[]) =>
      plugin(name, deps, (k) => {
        events.push(`setup ${name}`);
        k.hooks.boot.tapPromise(name, async () => {
          events.push(`boot ${name}`);
        });
        k.hooks.shutdown.tapPromise(name, async () => {
          events.push(`shutdown ${name}`);
        });
      });
    // Listed out of order on purpose: the loader orders by dependencies.
    const kernel = testKernel([make('c', ['b']), make('a', []), make('b', ['a'])]);
    await kernel.start();
    expect(kernel.state).toBe('running');
    await kernel.stop();
    expect(events).toEqual(['setup a', 'setup b', 'setup c', 'boot a', 'boot b', 'boot c', 'shutdown c', 'shutdown b', 'shutdown a']);
  });

  it('rethrows a boot error with plugin and hook name, keeping the code and cause', async () => {
    const cause = new Error('database exploded');
    const kernel = testKernel([
      plugin('db', [], (k) => {
        k.hooks.boot.tapPromise('db', async () => {
          throw cause;
        });
      }),
    ]);
    const error = await kernel.start().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PluginError);
    expect(error).toMatchObject({ code: 'plugin.failed', plugin: 'db', hook: 'boot', cause });
    expect((error as Error).message).toContain('[db] boot: database exploded');
  });

  it('wraps setup errors and sync route-tap errors the same way', async () => {
    const bad = testKernel([
      plugin('p', [], () => {
        throw new Error('nope');
      }),
    ]);
    await expect(bad.start()).rejects.toMatchObject({ plugin: 'p', hook: 'setup' });

    const k = testKernel([
      plugin('router', [], (kernel) => {
        kernel.hooks.route.tap('router', () => {
          throw new Error('bad route');
        });
      }),
    ]);
    await k.start();
    const app = k.apps[0];
    if (!app) throw new Error('no app');
    expect(() => k.hooks.route.call({ kind: 'http', app, method: 'GET', path: '/', handler: () => 1, options: {}, meta: {} })).toThrow(
      expect.objectContaining({ plugin: 'router', hook: 'route' }),
    );
    await k.stop();
  });

  it('stops a boot that exceeds the plugin timeout with plugin.boot_timeout and shuts down the others', async () => {
    const stopped: string[] = [];
    const kernel = testKernel([
      plugin('fine', [], (k) => {
        k.hooks.shutdown.tapPromise('fine', async () => {
          stopped.push('fine');
        });
      }),
      plugin(
        'slow',
        ['fine'],
        (k) => {
          k.hooks.boot.tapPromise('slow', () => new Promise(() => {}));
        },
        { bootTimeoutMs: 50 },
      ),
    ]);
    await expect(kernel.start()).rejects.toMatchObject({ code: 'plugin.boot_timeout', plugin: 'slow', hook: 'boot' });
    expect(stopped).toEqual(['fine']);
  });

  it('bounds each shutdown step and keeps going after a failing or hung one', async () => {
    const ran: string[] = [];
    const kernel = testKernel(
      [
        plugin('a', [], (k) => k.hooks.shutdown.tapPromise('a', async () => void ran.push('a'))),
        plugin('b', ['a'], (k) => k.hooks.shutdown.tapPromise('b', () => new Promise(() => {}))),
        plugin('c', ['b'], (k) =>
          k.hooks.shutdown.tapPromise('c', async () => {
            ran.push('c');
            throw new Error('c failed');
          }),
        ),
      ],
      { config: { lifecycle: { shutdownTimeoutMs: 50 } } },
    );
    await kernel.start();
    const t0 = Date.now();
    await kernel.stop();
    expect(ran).toEqual(['c', 'a']);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(kernel.state).toBe('stopped');
  });

  it('refuses taps once the kernel runs, and the hooks object is frozen', async () => {
    const kernel = testKernel([]);
    await kernel.start();
    // Untapped hooks report unused, so hot paths can skip building their arguments.
    expect(kernel.hooks.wsMessage.isUsed()).toBe(false);
    expect(kernel.hooks.route.isUsed()).toBe(false);
    expect(Object.isFrozen(kernel.hooks)).toBe(true);
    expect(() => kernel.hooks.boot.tap('late', () => {})).toThrow(expect.objectContaining({ code: 'hooks.frozen' }));
    await kernel.stop();
  });

  it('wsMessage bails with the MegaError a tap returns; presence taps run in parallel', async () => {
    const { MegaError } = await import('../src/errors.js');
    const order: string[] = [];
    const kernel = testKernel([
      plugin('asp', [], (k) => {
        k.hooks.wsMessage.tapPromise('asp', async (frame) => {
          if (frame.data === 'plain') return new MegaError('asp.signal', 'plain frame in encrypted namespace');
          frame.data = 'decrypted';
          return undefined;
        });
        k.hooks.wsMessage.tapPromise('parser', async (frame) => {
          order.push(`parse ${String(frame.data)}`);
          return undefined;
        });
        k.hooks.presence.tapPromise('slow', () => new Promise<void>((r) => setTimeout(() => r(void order.push('slow')), 30)));
        k.hooks.presence.tapPromise('fast', async () => void order.push('fast'));
      }),
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
});
