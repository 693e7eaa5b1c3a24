/** @mega/bus on the real NATS from scripts/services.sh: prefixes, request/reply, restart, boot errors. */
import { getApp } from '@mega/kernel';
import { bootPlugins, buildPlugins, stopAll } from '@mega/testing';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../../scripts/test/procs.js';
import { restartService } from '../../../scripts/test/restart.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import bus from '../src/index.js';

const env = serviceEnv();
afterEach(stopAll);
const tick = (ms = 100) => new Promise((r) => setTimeout(r, ms));

describe('@mega/bus nats driver', () => {
  it('apps on one NATS connection are isolated by prefix; getApp(name).bus crosses on purpose; raw subjects are prefixed', async () => {
    await bootPlugins({
      plugins: [bus],
      services: { buses: { events: { driver: 'nats', url: env.NATS_URL } } },
      apps: { natsweb: {}, natsadmin: { bus: { prefix: `glob${process.pid}.` } } },
    });
    const web = getApp('natsweb').bus;
    const admin = getApp('natsadmin').bus;
    expect(web.driver).toBe('nats');
    const seen: string[] = [];
    web.on('order.created', (p: { from: string }) => void seen.push(`web:${p.from}`));
    admin.on('order.created', (p: { from: string }) => void seen.push(`admin:${p.from}`));
    // A plain NATS client sees the prefixed subject.
    const raw = await connect({ servers: env.NATS_URL });
    const rawSeen: string[] = [];
    raw.subscribe('natsweb.>', { callback: (_e, m) => void rawSeen.push(`${m.subject}=${m.string()}`) });
    await raw.flush();
    await (web.native as { flush(): Promise<void> }).flush();
    await web.emit('order.created', { from: 'web' });
    await admin.emit('order.created', { from: 'admin' });
    await until(() => (seen.length === 2 && rawSeen.length === 1 ? true : undefined), 5000, 'deliveries');
    expect(seen.sort()).toEqual(['admin:admin', 'web:web']);
    expect(rawSeen).toEqual(['natsweb.order.created={"from":"web"}']);
    await raw.close();
    expect(web.stats()).toMatchObject({ driver: 'nats', service: 'events', prefix: 'natsweb.', received: 1 });
  });

  it('request/reply with typed timeout, no-responders and remote errors', async () => {
    const { kernel } = await bootPlugins({ plugins: [bus], services: { buses: { default: { driver: 'nats', url: env.NATS_URL } } } });
    const b = kernel.apps[0]?.bus;
    if (!b) throw new Error('no bus');
    b.on('sum', async (xs: number[]) => xs.reduce((a, c) => a + c, 0));
    b.on('never', () => new Promise(() => {}));
    b.on('boom', () => {
      throw new Error('exploded');
    });
    await (b.native as { flush(): Promise<void> }).flush();
    expect(await b.request('sum', [1, 2, 3])).toBe(6);
    await expect(b.request('never', null, { timeout: 100 })).rejects.toMatchObject({ code: 'bus.request_timeout' });
    await expect(b.request('nobody')).rejects.toMatchObject({ code: 'bus.no_responders' });
    await expect(b.request('boom')).rejects.toMatchObject({ code: 'bus.handler_failed' });
    const health = kernel.healthChecks().find((h) => h.name === 'bus:default');
    expect(health?.plugin).toBe('@mega/bus');
    await health?.check();
  });

  it('subscriptions resume after a NATS restart', async () => {
    const { kernel } = await bootPlugins({ plugins: [bus], services: { buses: { default: { driver: 'nats', url: env.NATS_URL } } } });
    const b = kernel.apps[0]?.bus;
    if (!b) throw new Error('no bus');
    const got: number[] = [];
    b.on('beat', (n: number) => void got.push(n));
    await b.emit('beat', 0);
    await until(() => (got.includes(0) ? true : undefined), 5000, 'first beat');
    await restartService('nats');
    let n = 1;
    // Emit until one arrives: the client reconnects and re-subscribes by itself.
    await until(
      async () => {
        await b.emit('beat', n++);
        await tick(100);
        return got.some((x) => x > 0) ? true : undefined;
      },
      30_000,
      'a beat after the restart',
    );
    expect(b.stats().handlerErrors).toBe(0);
  });

  it('A4: emits during a real NATS restart: every emit that resolved is delivered, in order, none lost', async () => {
    const { kernel } = await bootPlugins({ plugins: [bus], services: { buses: { default: { driver: 'nats', url: env.NATS_URL } } } });
    const b = kernel.apps[0]?.bus;
    if (!b) throw new Error('no bus');
    const got: number[] = [];
    b.on('seq', (n: number) => void got.push(n));
    await (b.native as { flush(): Promise<void> }).flush();
    const resolved = new Set<number>();
    const rejected: unknown[] = [];
    let sent = 0;
    let whileDown = 0;
    let stop = false;
    // One emit every 2 ms, never awaited (fire-and-forget, as a request handler would), through the outage.
    const pump = (async () => {
      while (!stop) {
        const i = sent++;
        if (b.stats().nats?.connected === false) whileDown++;
        b.emit('seq', i).then(
          () => void resolved.add(i),
          (error: unknown) => void rejected.push(error),
        );
        await tick(2);
      }
    })();
    await until(() => (resolved.size >= 50 ? true : undefined), 5000, 'emits before the restart');
    await restartService('nats');
    const after = sent;
    await until(() => (resolved.has(after + 50) ? true : undefined), 30_000, 'emits after the reconnect');
    stop = true;
    await pump;
    await until(() => (resolved.size + rejected.length === sent ? true : undefined), 10_000, 'every emit settled');
    const seen = new Set(got);
    await until(() => ([...resolved].every((i) => seen.has(i)) ? true : undefined), 10_000, 'deliveries').catch(() => undefined);
    for (const n of got) seen.add(n);
    const lost = [...resolved].filter((i) => !seen.has(i));
    console.log(
      `A4 bus: ${sent} emits, ${whileDown} while disconnected, ${resolved.size} resolved, ${rejected.length} rejected, ${lost.length} lost, ${got.length - seen.size} duplicates, resent ${b.stats().nats?.resent}`,
    );
    expect(whileDown).toBeGreaterThan(0);
    expect(lost).toEqual([]);
    expect(rejected).toEqual([]);
    // In order: the first delivery of each message comes in emit order.
    const first = got.filter((n, i) => got.indexOf(n) === i);
    expect(first).toEqual([...first].sort((x, y) => x - y));
  }, 90_000);

  it('A4: past the reconnect buffer emit rejects with bus.unavailable, and what was buffered is delivered', async () => {
    const { kernel } = await bootPlugins({
      plugins: [bus],
      services: { buses: { default: { driver: 'nats', url: env.NATS_URL, reconnectBufferMessages: 5 } } },
    });
    const b = kernel.apps[0]?.bus;
    if (!b) throw new Error('no bus');
    const got: number[] = [];
    b.on('small', (n: number) => void got.push(n));
    await (b.native as { flush(): Promise<void> }).flush();
    const restart = restartService('nats');
    await until(() => (b.stats().nats?.connected === false ? true : undefined), 30_000, 'the disconnect');
    const results = Array.from({ length: 8 }, (_, i) =>
      b.emit('small', i).then(
        () => 'ok' as const,
        (e: { code?: string }) => e.code,
      ),
    );
    // A request while disconnected is refused at once, not left to time out.
    await expect(b.request('small', 1, { timeout: 5000 })).rejects.toMatchObject({ code: 'bus.unavailable' });
    await restart;
    const settled = await Promise.all(results);
    expect(settled).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'bus.unavailable', 'bus.unavailable', 'bus.unavailable']);
    await until(() => (got.length >= 5 ? true : undefined), 10_000, 'the buffered emits');
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(b.stats().nats).toMatchObject({ refused: 3, pending: 0 });
  }, 90_000);

  it('a NATS server down at boot fails boot naming alias and URL, unless optional', async () => {
    const url = 'nats://127.0.0.1:1';
    await expect(
      buildPlugins({ plugins: [bus], services: { buses: { events: { driver: 'nats', url, connectTimeoutMs: 1000 } } } }).kernel.start(),
    ).rejects.toMatchObject({
      code: 'bus.unavailable',
      details: { alias: 'events', url },
      message: expect.stringContaining(`bus "events" cannot connect to ${url}`),
    });
    const { kernel } = await bootPlugins({
      plugins: [bus],
      services: { buses: { events: { driver: 'nats', url, optional: true, connectTimeoutMs: 500 } } },
    });
    await expect(kernel.apps[0]?.bus.emit('x')).rejects.toMatchObject({ code: 'bus.unavailable', status: 503 });
  });
});
