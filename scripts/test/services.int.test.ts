/** The real services `scripts/services.sh up` starts answer with their real clients (no mocks). */

import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { serviceEnv } from './service-env.js';

const env = serviceEnv();

describe('real services from scripts/services.sh', () => {
  it('PostgreSQL runs queries', async () => {
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query<{ v: number; version: string }>('select 41 + 1 as v, version() as version');
      expect(rows[0]?.v).toBe(42);
      expect(rows[0]?.version).toMatch(/PostgreSQL/);
    } finally {
      await client.end();
    }
  });

  it('Redis stores and expires keys', async () => {
    const redis = new Redis(env.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    try {
      await redis.set('mega:services-test', 'ok', 'PX', 5000);
      expect(await redis.get('mega:services-test')).toBe('ok');
      expect(await redis.pttl('mega:services-test')).toBeGreaterThan(0);
    } finally {
      redis.disconnect();
    }
  });

  it('NATS has JetStream enabled', async () => {
    const nc = await connect({ servers: env.NATS_URL, timeout: 5000 });
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.getAccountInfo();
      expect(info.limits).toBeDefined();
      const sub = nc.subscribe('mega.services.test', { max: 1 });
      nc.publish('mega.services.test', 'ping');
      for await (const m of sub) expect(m.string()).toBe('ping');
    } finally {
      await nc.close();
    }
  });

  it('FerretDB speaks the MongoDB wire protocol and stores documents', async () => {
    const client = new MongoClient(env.MONGO_URL, { serverSelectionTimeoutMS: 5000 });
    await client.connect();
    try {
      const col = client.db().collection<{ _id: string; n: number }>('services_test');
      await col.deleteMany({});
      await col.insertOne({ _id: 'a', n: 1 });
      expect(await col.findOne({ _id: 'a' })).toEqual({ _id: 'a', n: 1 });
      const ping = await client.db('admin').command({ ping: 1 });
      expect(ping.ok).toBe(1);
    } finally {
      await client.close();
    }
  });
});
