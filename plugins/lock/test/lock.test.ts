/** @mega/lock on the memory driver: FIFO, fencing, timeouts, auto-extension, loss, stats, config. */

import cache from '@mega/cache-redis';
import type { PluginDefinition } from '@mega/kernel';
import { bootPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import lock from '../src/index.js';

afterEach(stopAll);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function manager(config: Record<string, unknown> = {}, plugins: PluginDefinition[] = [lock]) {
  const { kernel, logs } = await bootPlugins({
    plugins,
    apps: { [`l${Math.random().toString(36).slice(2, 7)}`]: { lock: config } },
  });
  const app = kernel.apps[0];
  if (!app) throw new Error('no app');
  return { kernel, logs, lock: app.lock, ctx: kernel.createContext(app) };
}

describe('@mega/lock memory driver', () => {
  it('serves waiters FIFO with strictly increasing fencing tokens and no overlap', async () => {
    const { lock: l, ctx } = await manager();
    expect(ctx.lock).toBe(l);
    const order: number[] = [];
    const tokens: number[] = [];
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        l.with('k', { ttl: 1000, waitMs: 5000 }, async ({ token }) => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          order.push(i);
          tokens.push(token);
          await sleep(2);
          inside--;
        }),
      ),
    );
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(maxInside).toBe(1);
    expect(tokens.every((t, i) => i === 0 || t > (tokens[i - 1] as number))).toBe(true);
    expect(l.stats()).toMatchObject({ driver: 'memory', acquired: 20, released: 20, held: 0, waiting: 0, lost: 0 });
  });

  it('waitMs exceeded -> lock.timeout; waitMs 0 tries once', async () => {
    const { lock: l } = await manager();
    const lease = await l.acquire('busy', { ttl: 5000 });
    await expect(l.with('busy', { waitMs: 50 }, async () => 1)).rejects.toMatchObject({ code: 'lock.timeout', status: 504 });
    await expect(l.acquire('busy', { waitMs: 0 })).rejects.toMatchObject({ code: 'lock.timeout' });
    await l.release(lease);
    const again = await l.acquire('busy', { waitMs: 0 });
    expect(again.token).toBeGreaterThan(lease.token);
    await l.release(again);
    expect(l.stats().timeouts).toBe(2);
  });

  it('auto-extends while fn runs past the TTL', async () => {
    const { lock: l } = await manager();
    const result = await l.with('long', { ttl: 90 }, async ({ signal }) => {
      await sleep(300);
      return signal.aborted ? 'aborted' : 'ok';
    });
    expect(result).toBe('ok');
    expect(l.stats().extended).toBeGreaterThanOrEqual(3);
  });

  it('a lease that expires aborts its signal, is logged, and release reports lock.lost', async () => {
    const { lock: l, logs } = await manager();
    const lease = await l.acquire('exp', { ttl: 60 });
    const reason = await new Promise<unknown>((resolve) => lease.signal.addEventListener('abort', () => resolve(lease.signal.reason)));
    expect(reason).toMatchObject({ code: 'lock.lost' });
    expect(lease.lost).toBe(true);
    // The next holder gets the key (and a higher token) while the old one still thinks it works.
    const next = await l.acquire('exp', { waitMs: 100 });
    expect(next.token).toBeGreaterThan(lease.token);
    await expect(l.release(lease)).rejects.toMatchObject({ code: 'lock.lost' });
    await expect(l.extend(lease)).rejects.toMatchObject({ code: 'lock.lost' });
    await l.release(next);
    expect(l.stats().lost).toBe(1);
    expect(logs.some((x) => x.level === 50 && String(x.msg).includes('was lost'))).toBe(true);
  });

  it('with() rejects lock.lost when the lease was lost during fn', async () => {
    const { lock: l } = await manager();
    const lease = await l.acquire('x', { ttl: 5000 });
    await l.release(lease);
    // Force loss: an extension that finds another owner.
    await expect(
      l.with('y', { ttl: 5000 }, async ({ lease: held }) => {
        const other = await l.acquire('z');
        await l.release(other);
        (held as unknown as { owner: string }).owner = 'someone-else';
        await l.extend(held).catch(() => undefined);
        return 'done';
      }),
    ).rejects.toMatchObject({ code: 'lock.lost' });
  });

  it('validates options and config', async () => {
    const { lock: l } = await manager();
    await expect(l.acquire('k', { ttl: 0 })).rejects.toMatchObject({ code: 'lock.invalid_options' });
    await expect(manager({ driver: 'zookeeper' })).rejects.toMatchObject({ code: 'config.invalid' });
    // The Redis driver needs the Redis owner: without it, setup names the command that adds it.
    await expect(manager({ driver: 'redis' })).rejects.toMatchObject({
      code: 'plugin.missing_dependency',
      message: expect.stringContaining('run: mega plugin add @mega/cache-redis'),
    });
    await expect(manager({ driver: 'redis', service: 'nope' }, [cache, lock])).rejects.toMatchObject({
      code: 'adapter.unknown_alias',
    });
    await expect(manager({ service: 'x', driver: 'memory' })).rejects.toMatchObject({ code: 'config.invalid' });
  });
});
