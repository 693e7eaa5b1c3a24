/** RedisRoster and the plugin against the real Redis: pipelined writes, lazy expiry, hook-driven roster. */
import type { Kernel } from '@mega/kernel';
import { createLogger, loadKernel } from '@mega/kernel';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { Client, chatProject } from '../../../scripts/test/chat-cluster.js';
import { killAll, megaStart } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import { channelKey, RedisRoster } from '../src/index.js';

const { REDIS_URL } = serviceEnv();
const redis = new Redis(REDIS_URL);
const prefix = `test:roster:${Date.now()}:`;
const PLUGINS = ['@mega/http', '@mega/ws', '@mega/ws-presence', '@mega/cache-redis', '@mega/ws-roster-redis'];
/** The roster lives on @mega/cache-redis's client of `services.caches.default`. */
const redisCache = (url: string) => `services: { caches: { default: { driver: 'redis', url: ${JSON.stringify(url)} } } }`;
const kernels: Kernel[] = [];
afterAll(async () => {
  for (const k of kernels) await k.stop();
  killAll();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

describe('RedisRoster', () => {
  it('adds, refreshes and removes in pipelines; expired members are skipped and deleted lazily', async () => {
    let now = 1_000_000;
    const r = new RedisRoster<{ name: string }>(redis, { prefix, ttlMs: 1000, now: () => now });
    await r.add([
      { channel: 'c1', sessionId: 's1', member: { name: 'ann' } },
      { channel: 'c1', sessionId: 's2', member: { name: 'bob' } },
      { channel: 'c2', sessionId: 's1', member: { name: 'ann' } },
    ]);
    expect((await r.list('c1')).map((m) => m.member.name).sort()).toEqual(['ann', 'bob']);
    expect(await redis.pttl(r.key('c1'))).toBeGreaterThan(0);
    now += 600;
    await r.refresh([{ channel: 'c1', sessionId: 's1', member: { name: 'ann2' } }]);
    now += 600; // s2 expired (1200 ms without refresh), s1 refreshed 600 ms ago
    expect(await r.list('c1')).toEqual([{ sessionId: 's1', member: { name: 'ann2' } }]);
    await new Promise((res) => setTimeout(res, 50));
    expect(await redis.hkeys(r.key('c1'))).toEqual(['s1']);
    await r.remove([
      { channel: 'c1', sessionId: 's1' },
      { channel: 'c2', sessionId: 's1' },
    ]);
    expect(await r.list('c1')).toEqual([]);
    expect(await r.list('c2')).toEqual([]);
  });

  it('treats garbage values as expired instead of failing the read', async () => {
    const r = new RedisRoster(redis, { prefix, ttlMs: 1000 });
    await redis.hset(r.key('junk'), 'a', 'not json', 'b', '{"e":"x"}', 'c', JSON.stringify({ m: 1, e: Date.now() + 10_000 }));
    expect(await r.list('junk')).toEqual([{ sessionId: 'c', member: 1 }]);
  });
});

describe('@mega/ws-roster-redis plugin', () => {
  it('mirrors joins and leaves of real WS sessions into per-namespace and per-channel hashes', async () => {
    const dir = chatProject({
      plugins: PLUGINS,
      server: "{ host: '127.0.0.1', port: 0 }",
      global: `${redisCache(REDIS_URL)}, wsRoster: { prefix: ${JSON.stringify(prefix)}, ttlMs: 5000 }`,
    });
    const kernel = await loadKernel({ dir, logger: createLogger({ level: 'silent' }) });
    kernels.push(kernel);
    await kernel.start();
    const port = kernel.use<{ port: number }>('http').port;
    const c1 = await Client.open(port, 'user=ann&session=r1&ch=room,vip');
    const c2 = await Client.open(port, 'user=bob&session=r2');
    const roster = kernel.use('ws-roster');
    const app = kernel.apps[0]?.name as string;
    const names = async (channel?: string) => (await roster.of(app).list('/chat', channel)).map((e) => e.sessionId).sort();
    const until = async (want: string, channel?: string) => {
      for (let i = 0; i < 100 && (await names(channel)).join() !== want; i++) await new Promise((r) => setTimeout(r, 20));
      return (await names(channel)).join();
    };
    expect(await until('r1,r2')).toBe('r1,r2');
    expect(await names('vip')).toEqual(['r1']);
    expect(await redis.hkeys(prefix + channelKey(app, '/chat', 'room'))).toEqual(expect.arrayContaining(['r1', 'r2']));
    await c1.close();
    expect(await until('r2')).toBe('r2');
    expect(await names('vip')).toEqual([]);
    await c2.close();
    expect(await until('')).toBe('');
  });

  it('mirror: ctx.presence.list() on each instance is the cluster-wide roster from Redis, leaves included', async () => {
    const mirrorPrefix = `${prefix}mirror:`;
    const dir = chatProject({
      plugins: PLUGINS,
      global: `${redisCache(REDIS_URL)}, wsRoster: { prefix: ${JSON.stringify(mirrorPrefix)}, ttlMs: 3000, refreshMs: 100, mirror: true }`,
    });
    // Two real instances of the same app (one process cannot register an app name twice).
    const ports = (await Promise.all([megaStart(dir), megaStart(dir)])).map((proc) => proc.port);
    const a = await Client.open(ports[0] as number, 'user=ann&session=m1&ch=room,vip');
    const b = await Client.open(ports[1] as number, 'user=bob&session=m2&ch=room');
    const list = async (c: Client, channel?: string) => (await c.ask('chat.list', channel ? { channel } : {})).payload as string[];
    const settle = async (c: Client, want: string[], channel?: string) => {
      for (let i = 0; i < 100 && (await list(c, channel)).join() !== want.join(); i++) await new Promise((r) => setTimeout(r, 30));
      return list(c, channel);
    };
    expect(await settle(a, ['m1|ann', 'm2|bob'])).toEqual(['m1|ann', 'm2|bob']);
    expect(await settle(b, ['m1|ann', 'm2|bob'])).toEqual(['m1|ann', 'm2|bob']);
    expect(await list(b, 'vip')).toEqual(['m1|ann']);
    await b.close();
    expect(await settle(a, ['m1|ann'])).toEqual(['m1|ann']);
    await a.close();
  });
});
