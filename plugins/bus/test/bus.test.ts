/** @mega/bus on the memory driver: prefixes, request/reply, errors, handler failures, stats. */
import { getApp } from '@mega/kernel';
import { bootPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import bus, { matches } from '../src/index.js';

afterEach(stopAll);

const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

describe('@mega/bus memory driver', () => {
  it('emit reaches subscribers of the same app only; getApp(name).bus crosses apps on purpose', async () => {
    const { kernel } = await bootPlugins({ plugins: [bus], apps: { webb1: {}, admin1: { bus: { prefix: 'glob.' } } } });
    const web = kernel.apps[0] as ReturnType<typeof getApp>;
    const seenWeb: unknown[] = [];
    const seenAdmin: unknown[] = [];
    web.bus.on('order.created', (p) => void seenWeb.push(p));
    getApp('admin1').bus.on('order.created', (p) => void seenAdmin.push(p));
    const ctx = kernel.createContext(web);
    expect(ctx.bus).toBe(web.bus);
    await ctx.bus.emit('order.created', { id: 1 });
    await tick();
    expect(seenWeb).toEqual([{ id: 1 }]);
    expect(seenAdmin).toEqual([]);
    await getApp('admin1').bus.emit('order.created', { id: 2 });
    await tick();
    expect(seenAdmin).toEqual([{ id: 2 }]);
    expect(web.bus.prefix).toBe('webb1.');
    expect(getApp('admin1').bus.prefix).toBe('glob.');
  });

  it('payloads travel as JSON (a copy, dates become strings) and wildcards match', async () => {
    const { kernel } = await bootPlugins({ plugins: [bus] });
    const b = kernel.apps[0]?.bus;
    if (!b) throw new Error('no bus');
    const got: Array<[unknown, string]> = [];
    b.on('user.*', (p, meta) => void got.push([p, meta.event]));
    b.on('audit.>', (_p, meta) => void got.push(['audit', meta.event]));
    const payload = { at: new Date(0), n: 1 };
    await b.emit('user.login', payload);
    await b.emit('audit.user.login');
    await b.emit('user.login.failed', 1);
    payload.n = 2;
    await tick();
    expect(got).toEqual([
      [{ at: '1970-01-01T00:00:00.000Z', n: 1 }, 'user.login'],
      ['audit', 'audit.user.login'],
    ]);
    expect(matches('a.*.c', 'a.b.c')).toBe(true);
    expect(matches('a.>', 'a')).toBe(false);
  });

  it('request resolves with the handler value; timeout, no responders and remote errors are typed', async () => {
    const { kernel } = await bootPlugins({ plugins: [bus] });
    const b = kernel.apps[0]?.bus;
    if (!b) throw new Error('no bus');
    b.on<{ a: number; b: number }>('math.add', async ({ a, b: c }) => a + c);
    b.on('slow', () => new Promise((r) => setTimeout(r, 500)));
    b.on('fails', () => {
      throw new Error('kaput');
    });
    // A plain listener on the same subject (returns undefined) does not answer for the responder.
    b.on('math.>', () => undefined);
    expect(await b.request('math.add', { a: 2, b: 3 })).toBe(5);
    await expect(b.request('slow', null, { timeout: 50 })).rejects.toMatchObject({ code: 'bus.request_timeout', status: 504 });
    await expect(b.request('nobody.home')).rejects.toMatchObject({ code: 'bus.no_responders' });
    await expect(b.request('fails')).rejects.toMatchObject({ code: 'bus.handler_failed', message: expect.stringContaining('kaput') });
    const s = b.stats();
    expect(s).toMatchObject({ driver: 'memory', requests: 4, handlerErrors: 1, subscriptions: 4 });
    expect(s.ops.errors).toBe(3);
  });

  it('a throwing handler is logged with the event name and its subscription keeps working', async () => {
    const { kernel, logs } = await bootPlugins({ plugins: [bus] });
    const b = kernel.apps[0]?.bus;
    if (!b) throw new Error('no bus');
    let calls = 0;
    b.on('tick', (n: number) => {
      calls++;
      if (n === 1) throw new Error('bad tick');
    });
    for (let n = 0; n < 3; n++) await b.emit('tick', n);
    await tick();
    expect(calls).toBe(3);
    const line = logs.find((l) => l.event === 'tick');
    expect(line).toMatchObject({ event: 'tick', msg: expect.stringContaining('bad tick') });
  });

  it('unsubscribe stops delivery; bad event names are refused', async () => {
    const { kernel } = await bootPlugins({ plugins: [bus] });
    const b = kernel.apps[0]?.bus;
    if (!b) throw new Error('no bus');
    let n = 0;
    const off = b.on('x', () => void n++);
    await b.emit('x');
    await tick();
    off();
    await b.emit('x');
    await tick();
    expect(n).toBe(1);
    await expect(b.emit('a..b')).rejects.toMatchObject({ code: 'bus.invalid_event' });
    await expect(b.emit('a.*')).rejects.toMatchObject({ code: 'bus.invalid_event' });
    await expect(b.request('a.>')).rejects.toMatchObject({ code: 'bus.invalid_event' });
    expect(() => b.on('a.>.b', () => {})).toThrow(expect.objectContaining({ code: 'bus.invalid_event' }));
  });

  it('bad config fails boot: unknown bus driver, unknown service alias, malformed URL', async () => {
    await expect(bootPlugins({ plugins: [bus], services: { buses: { ev: { driver: 'kafka', url: 'kafka://x' } } } })).rejects.toMatchObject(
      {
        code: 'adapter.unknown_driver',
        message: expect.stringContaining('services.buses.ev'),
      },
    );
    await expect(
      bootPlugins({
        plugins: [bus],
        services: { buses: { ev: { driver: 'nats', url: 'nats://127.0.0.1:1' } } },
        apps: { w: { bus: { service: 'events' } } },
      }),
    ).rejects.toMatchObject({ code: 'adapter.unknown_alias', details: { known: ['ev'] } });
    await expect(bootPlugins({ plugins: [bus], services: { buses: { ev: { driver: 'nats', url: 'not a url' } } } })).rejects.toMatchObject({
      code: 'adapter.invalid_url',
    });
    await expect(bootPlugins({ plugins: [bus], apps: { w: { bus: { driver: 'rabbit' as never } } } })).rejects.toMatchObject({
      code: 'config.invalid',
    });
  });
});
