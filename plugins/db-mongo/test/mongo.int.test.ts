/** @mega/db-mongo against FerretDB from scripts/services.sh (MongoDB wire protocol, real driver). */
import { getApp } from '@mega/kernel';
import { bootPlugins, buildPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import postgres from '../../db-postgres/src/index.js';
import type { MongoDb } from '../src/index.js';
import mongo from '../src/index.js';

const env = serviceEnv();
afterEach(stopAll);

describe('@mega/db-mongo on FerretDB', () => {
  it('collection(name) reads and writes; stats count driver commands; readiness pings', async () => {
    const { kernel } = await bootPlugins({
      plugins: [mongo],
      services: { dbs: { docs: { driver: 'mongodb', url: env.MONGO_URL } } },
      apps: { mongoapp: {} },
    });
    const ctx = kernel.createContext(kernel.apps[0] as never);
    const db = ctx.db<MongoDb>('docs');
    expect(db).toBe(getApp('mongoapp').db('docs'));
    expect(ctx.db()).toBe(db);
    const col = db.collection<{ _id: string; n: number }>(`mega_test_${process.pid}`);
    await col.deleteMany({});
    await col.insertMany([
      { _id: 'a', n: 1 },
      { _id: 'b', n: 2 },
    ]);
    await col.updateOne({ _id: 'a' }, { $inc: { n: 10 } });
    expect(await col.find({}).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'a', n: 11 },
      { _id: 'b', n: 2 },
    ]);
    await expect(col.insertOne({ _id: 'a', n: 0 })).rejects.toMatchObject({ code: 11000 });
    await col.drop();
    const s = db.stats();
    expect(s).toMatchObject({ driver: 'mongodb', alias: 'docs', database: 'mega' });
    expect(s.operations).toBeGreaterThanOrEqual(6);
    expect(s.errors).toBeGreaterThanOrEqual(1);
    expect(s.latency.maxMs).toBeGreaterThan(0);
    // Every operation gave its connection back: one at least stays open and idle, none is waited for.
    expect(s.pool.total).toBeGreaterThanOrEqual(1);
    expect(s.pool).toMatchObject({ idle: s.pool.total, waiting: 0 });
    const health = kernel.healthChecks().find((h) => h.name === 'db:docs');
    expect(health?.plugin).toBe('@mega/db-mongo');
    await health?.check();
    expect(db.native.constructor.name).toBe('MongoClient');
  });

  it('shares ctx.db with @mega/db-postgres: one registry, every alias listed on a miss', async () => {
    const { kernel } = await bootPlugins({
      plugins: [postgres, mongo],
      services: { dbs: { primary: { driver: 'pglite', url: 'memory://' }, docs: { driver: 'mongodb', url: env.MONGO_URL } } },
    });
    const app = kernel.apps[0];
    expect(app?.db().driver).toBe('pglite');
    expect(app?.db('docs').driver).toBe('mongodb');
    expect(() => app?.db('cache')).toThrow(/known: (primary, docs|docs, primary)/);
  });

  it('a server down at boot fails boot naming alias and URL, unless optional', async () => {
    const url = 'mongodb://127.0.0.1:1/mega';
    await expect(
      buildPlugins({ plugins: [mongo], services: { dbs: { docs: { driver: 'mongodb', url, connectTimeoutMs: 1000 } } } }).kernel.start(),
    ).rejects.toMatchObject({
      code: 'db.unavailable',
      details: { alias: 'docs', url },
      message: expect.stringContaining(`db "docs" cannot connect to ${url}`),
    });
    const { kernel } = await bootPlugins({
      plugins: [mongo],
      services: { dbs: { docs: { driver: 'mongodb', url, optional: true, connectTimeoutMs: 500 } } },
    });
    await expect(
      kernel
        .healthChecks()
        .find((h) => h.name === 'db:docs')
        ?.check(),
    ).rejects.toMatchObject({
      code: 'db.unavailable',
    });
    await expect(
      buildPlugins({ plugins: [mongo], services: { dbs: { docs: { driver: 'mongodb', url: 'http://x' } } } }).kernel.start(),
    ).rejects.toMatchObject({
      code: 'adapter.invalid_url',
    });
  });
});
