/** @mega/adapters: the adapter-plugin skeleton in a real kernel, alias picking, declarations, URL redaction. */
import { definePlugin, type PluginDefinition, Type, UnavailableError } from '@mega/kernel';
import { bootPlugins, buildPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Adapter,
  AdapterSet,
  errorSummary,
  OP_BUCKETS_MS,
  OpStats,
  pickAlias,
  redactText,
  redactUrl,
  serviceOptions,
  sharedRegistry,
} from '../src/index.js';

afterEach(stopAll);

/** A fake connection that records what the skeleton did to it. */
class Fake implements Adapter {
  readonly calls: string[] = [];
  up: boolean;
  constructor(
    readonly alias: string,
    readonly url: string,
    up: boolean,
    readonly retries = false,
  ) {
    this.up = up;
    if (retries) this.retry = () => void this.calls.push('retry');
  }
  retry?: () => void;
  async connect(): Promise<void> {
    this.calls.push('connect');
    if (!this.up) throw new UnavailableError('fake.unavailable', `fake "${this.alias}" cannot connect to ${redactUrl(this.url)}`);
  }
  async check(): Promise<void> {
    this.calls.push('check');
    if (!this.up) throw new UnavailableError('fake.unavailable', `fake "${this.alias}" is down`);
  }
  async close(): Promise<void> {
    this.calls.push('close');
    if (this.alias === 'broken') throw new Error('close failed');
  }
}

/** A plugin serving driver `fake` of `services.dbs`, on the skeleton; `made` collects its adapters. */
function fakePlugin(made: Map<string, Fake>, name = 'fake-db', driver = 'fake'): PluginDefinition {
  return definePlugin({
    name,
    version: '1.0.0',
    drivers: { dbs: [driver] },
    setup(api) {
      const set = new AdapterSet<Fake>({ kind: 'dbs', preferred: 'primary' }).addDeclared(api, (alias, decl) => {
        const fake = new Fake(alias, String(decl.url), decl.up !== false, decl.retries === true);
        made.set(alias, fake);
        return fake;
      });
      set.attach(api);
      const registry = sharedRegistry<Fake>(api, 'dbs', 'db', 'primary');
      for (const fake of set.all()) registry.add(fake.alias, fake);
    },
  });
}

describe('AdapterSet', () => {
  it('connects every alias at boot, registers one health check per alias, closes all at shutdown (a failing close is logged)', async () => {
    const made = new Map<string, Fake>();
    const { kernel, logs } = await bootPlugins({
      plugins: [fakePlugin(made)],
      services: { dbs: { primary: { driver: 'fake', url: 'fake://a' }, broken: { driver: 'fake', url: 'fake://b' } } },
    });
    expect([...made.values()].map((f) => f.calls)).toEqual([['connect'], ['connect']]);
    expect(kernel.healthChecks().map((h) => [h.name, h.plugin])).toEqual([
      ['db:primary', 'fake-db'],
      ['db:broken', 'fake-db'],
    ]);
    await kernel.healthChecks()[0]?.check();
    expect(made.get('primary')?.calls).toEqual(['connect', 'check']);
    await kernel.stop();
    expect(made.get('primary')?.calls.at(-1)).toBe('close');
    expect(made.get('broken')?.calls.at(-1)).toBe('close');
    expect(logs.some((l) => l.level === 40 && String(l.msg).includes('closing db:broken failed'))).toBe(true);
  });

  it('a required alias that cannot connect stops boot with its own error; an optional one warns, retries, and boot goes on', async () => {
    const made = new Map<string, Fake>();
    const err = await buildPlugins({
      plugins: [fakePlugin(made)],
      services: { dbs: { primary: { driver: 'fake', url: 'fake://u:hunter2@h', up: false } } },
    })
      .kernel.start()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'fake.unavailable', message: expect.stringContaining('fake://u:***@h') });
    expect(made.get('primary')?.calls).toEqual(['connect', 'close']);

    const { kernel, logs } = await bootPlugins({
      plugins: [fakePlugin(made)],
      services: { dbs: { primary: { driver: 'fake', url: 'fake://u:hunter2@h', up: false, optional: true, retries: true } } },
    });
    expect(made.get('primary')?.calls).toEqual(['connect', 'retry']);
    const warning = logs.find((l) => l.level === 40);
    expect(warning).toMatchObject({
      plugin: 'fake-db',
      alias: 'primary',
      msg: expect.stringContaining('optional, retrying in the background'),
    });
    expect(JSON.stringify(logs)).not.toContain('hunter2');
    await expect(kernel.healthChecks()[0]?.check()).rejects.toMatchObject({ code: 'fake.unavailable' });
  });

  it('get(): the alias asked for, else the preferred one, else the only one; unknown and ambiguous are typed errors', () => {
    const set = new AdapterSet<Fake>({ kind: 'caches', preferred: 'default' });
    expect(() => set.get()).toThrow(
      expect.objectContaining({ code: 'adapter.unknown_alias', details: { kind: 'caches', alias: 'default', known: [] } }),
    );
    const a = set.add(new Fake('a', 'x://a', true));
    expect(set.get()).toBe(a);
    const b = set.add(new Fake('b', 'x://b', true), true);
    expect(set.optional('b')).toBe(true);
    expect(set.optional('a')).toBe(false);
    expect(() => set.get()).toThrow(expect.objectContaining({ code: 'adapter.ambiguous_alias' }));
    expect(set.get('b')).toBe(b);
    expect(() => set.get('c')).toThrow(
      expect.objectContaining({ code: 'adapter.unknown_alias', details: { kind: 'caches', alias: 'c', known: ['a', 'b'] } }),
    );
    const d = set.add(new Fake('default', 'x://d', true));
    expect(set.get()).toBe(d);
    expect(set.checkName('a')).toBe('cache:a');
    expect(new AdapterSet({ kind: 'buses', preferred: 'default', label: 'bus' }).checkName('x')).toBe('bus:x');
    expect(pickAlias('dbs', ['only'], undefined, 'primary')).toBe('only');
  });
});

describe('sharedRegistry', () => {
  it('two plugins share one ctx.db registry; a miss lists every alias', async () => {
    const made = new Map<string, Fake>();
    const { kernel } = await bootPlugins({
      plugins: [fakePlugin(made, 'fake-one'), fakePlugin(made, 'fake-two', 'other')],
      services: { dbs: { primary: { driver: 'fake', url: 'fake://a' }, docs: { driver: 'other', url: 'fake://b' } } },
    });
    const app = kernel.apps[0];
    if (!app) throw new Error('no app');
    const ctx = kernel.createContext(app) as unknown as { db(alias?: string): Fake };
    expect(ctx.db()).toBe(made.get('primary'));
    expect(ctx.db('docs')).toBe(made.get('docs'));
    expect(() => ctx.db('nope')).toThrow(/known: primary, docs/);
  });
});

describe('serviceOptions', () => {
  const Decl = Type.Object(
    { driver: Type.Literal('x'), url: Type.String(), timeoutMs: Type.Integer({ minimum: 1, default: 5000 }) },
    { additionalProperties: false },
  );

  it('applies the schema defaults on a copy', () => {
    const declared = { driver: 'x', url: 'x://h' };
    expect(serviceOptions('caches', 'a', declared, Decl)).toEqual({ driver: 'x', url: 'x://h', timeoutMs: 5000 });
    expect(declared).toEqual({ driver: 'x', url: 'x://h' });
  });

  it('fails with config.invalid listing every problem, the URL redacted', () => {
    const bad = () => serviceOptions('caches', 'a', { driver: 'x', url: 'x://u:hunter2@h', timeoutMs: 0, tiemout: 1 }, Decl);
    expect(bad).toThrow(expect.objectContaining({ code: 'config.invalid', details: expect.objectContaining({ url: 'x://u:***@h' }) }));
    expect(bad).toThrow(/services\.caches\.a: \/tiemout .*; \/timeoutMs /);
    expect(bad).not.toThrow(/hunter2/);
  });
});

describe('redactUrl', () => {
  it.each([
    ['redis://:hunter2@127.0.0.1:6379', 'redis://:***@127.0.0.1:6379'],
    ['rediss://default:hunter2@cache.example:6380/2', 'rediss://default:***@cache.example:6380/2'],
    ['postgres://mega:hunter2@db.example:5432/app?sslmode=require', 'postgres://mega:***@db.example:5432/app?sslmode=require'],
    ['postgres://db.example/app?password=hunter2&sslmode=require', 'postgres://db.example/app?password=***&sslmode=require'],
    ['mongodb://app:hunter2@m1:27017,m2:27017/docs', 'mongodb://app:***@m1:27017,m2:27017/docs'],
    // NATS: a lone user part is a token; user:password; comma-separated server lists, spaces dropped.
    ['nats://s3cr3tToken@nats.example:4222', 'nats://***@nats.example:4222'],
    ['tls://s3cr3tToken@nats.example:4222', 'tls://***@nats.example:4222'],
    ['nats://bus:hunter2@n1:4222', 'nats://bus:***@n1:4222'],
    ['nats://a:hunter2@n1:4222, nats://tok@n2:4222,nats://n3:4222', 'nats://a:***@n1:4222,nats://***@n2:4222,nats://n3:4222'],
    // Nothing to hide: unchanged.
    ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'],
    ['postgres://mega@db/app', 'postgres://mega@db/app'],
    ['memory://', 'memory://'],
    // Not a URL at all: any //user:pass@ in it is still masked.
    ['not a url', 'not a url'],
    ['db at //app:hunter2@h1 and //s3cr3tToken@h2', 'db at //app:***@h1 and //***@h2'],
  ])('%s', (url, redacted) => {
    expect(redactUrl(url)).toBe(redacted);
    expect(redactUrl(url)).not.toContain('hunter2');
    expect(redactUrl(url)).not.toContain('s3cr3t');
  });

  it('leaves undefined and empty alone; redactText masks every URL inside a message', () => {
    expect(redactUrl(undefined)).toBeUndefined();
    expect(redactUrl('')).toBe('');
    expect(redactText('connect to redis://:hunter2@h:1 failed (fallback nats://tok@n:4222)')).toBe(
      'connect to redis://:***@h:1 failed (fallback nats://***@n:4222)',
    );
  });
});

describe('OpStats', () => {
  it('counts operations and errors, and keeps latency percentiles', async () => {
    const stats = new OpStats();
    await stats.time(async () => 1);
    await expect(stats.time(async () => Promise.reject(new Error('x')))).rejects.toThrow('x');
    stats.record(10, false);
    const s = stats.snapshot();
    expect(s).toMatchObject({ operations: 3, errors: 1, latency: { count: 3, maxMs: 10 } });
    expect(s.latency.p99Ms).toBeGreaterThanOrEqual(s.latency.p50Ms);
  });

  it('keeps cumulative latency buckets (upper bounds inclusive) and their sum, for histograms', () => {
    const stats = new OpStats();
    for (const ms of [0.5, 1, 3, 10, 20_000]) stats.record(ms, false);
    const { buckets, sumMs } = stats.snapshot().latency;
    expect(buckets).toHaveLength(OP_BUCKETS_MS.length + 1);
    expect(buckets[0]).toBe(2); // 0.5 and 1 (<= 1 ms)
    expect(buckets[OP_BUCKETS_MS.indexOf(5)]).toBe(1);
    expect(buckets[OP_BUCKETS_MS.indexOf(10)]).toBe(1);
    expect(buckets.at(-1)).toBe(1); // over the last bound
    expect(buckets.reduce((a, b) => a + b, 0)).toBe(5);
    expect(sumMs).toBeCloseTo(20_014.5);
  });
});

describe('errorSummary', () => {
  it('19: a driver error with its client attached (pg-pool sets err.client) logs as type, code and redacted message only', () => {
    const error = Object.assign(new Error('connect to postgres://mega:hunter2@db:5432/x failed'), {
      code: '57P01',
      client: { processID: 4242, secretKey: 123456789, connectionParameters: { password: 'hunter2' } },
    });
    const summary = errorSummary(error);
    expect(summary).toEqual({ type: 'Error', code: '57P01', message: 'connect to postgres://mega:***@db:5432/x failed' });
    expect(JSON.stringify(summary)).not.toMatch(/secretKey|hunter2|processID/);
    expect(errorSummary('plain text')).toEqual({ type: 'string', message: 'plain text' });
  });
});
