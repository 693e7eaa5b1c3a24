/**
 * Model CRUD on every real backend: embedded PGlite, PostgreSQL, SQLite, MariaDB and FerretDB (the
 * MongoDB wire protocol). The same model definitions and the same assertions run on each: value
 * round trips, typed errors (409 on a unique violation, 404 on a missing row), upsert, keyset
 * pagination stable under concurrent inserts, transactions (savepoints on SQL; FerretDB refuses them
 * with a typed error) and the escape hatches.
 */
import type { SqlDb } from '@mega/adapters';
import mongoPlugin, { type MongoDb } from '@mega/db-mongo';
import postgresPlugin, { type PostgresDb } from '@mega/db-postgres';
import type { Kernel } from '@mega/kernel';
import { stopAll } from '@mega/testing';
import type { Collection, Document } from 'mongodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import mariadbPlugin from '../../db-mariadb/src/index.js';
import sqlitePlugin from '../../db-sqlite/src/index.js';
import { defineModel, field, type MongoLike, type RowOf, snapshotOf } from '../src/index.js';
import { bootDb, createCollections, createTables, dropTables, mariadbUrl } from './fixtures.js';

const env = serviceEnv();
const prefix = `mm${process.pid}_`;

function models() {
  const Account = defineModel({
    name: 'Account',
    table: `${prefix}accounts`,
    fields: {
      id: field.id(),
      email: field.string({ length: 120 }).unique(),
      name: field.string().nullable(),
      role: field.string({ length: 20, enum: ['member', 'admin'] }).default('member'),
      age: field.integer().nullable(),
      score: field.float().default(0),
      active: field.boolean().default(true),
      token: field.uuid().defaultUuid(),
      birthday: field.date().nullable(),
      seenAt: field.timestamp().nullable(),
      meta: field.json<{ tags: string[] }>().nullable(),
      balance: field.decimal({ precision: 12, scale: 2 }).default('0.00'),
      visits: field.bigint().default(0),
    },
    timestamps: true,
  });
  const Tag = defineModel({
    name: 'Tag',
    table: `${prefix}tags`,
    fields: { code: field.uuid().primary().defaultUuid(), label: field.string({ length: 40 }), rank: field.integer() },
    indexes: [{ columns: ['label', 'rank'], unique: true }],
  });
  return { Account, Tag };
}
const { Account, Tag } = models();
const snapshot = snapshotOf([Account, Tag]);

interface Backend {
  name: string;
  kind: 'sql' | 'mongo';
  boot(): Promise<{ kernel: Kernel; db: SqlDb | MongoLike }>;
}

const backends: Backend[] = [
  { name: 'PGlite', kind: 'sql', boot: () => bootDb<PostgresDb>(postgresPlugin, { driver: 'pglite', url: 'memory://' }) },
  { name: 'PostgreSQL', kind: 'sql', boot: () => bootDb<PostgresDb>(postgresPlugin, { driver: 'postgres', url: env.DATABASE_URL }) },
  { name: 'SQLite', kind: 'sql', boot: () => bootDb<SqlDb>(sqlitePlugin, { driver: 'sqlite', url: ':memory:' }) },
  { name: 'MariaDB', kind: 'sql', boot: () => bootDb<SqlDb>(mariadbPlugin, { driver: 'mariadb', url: mariadbUrl() }) },
  {
    name: 'FerretDB',
    kind: 'mongo',
    boot: () => bootDb<MongoDb>(mongoPlugin, { driver: 'mongodb', url: env.MONGO_URL.replace(/\/[^/]*$/, `/mega_models_${process.pid}`) }),
  },
];

describe.each(backends)('models on $name', ({ name, kind, boot }) => {
  let db: SqlDb | MongoLike;
  let A: typeof Account;
  let T: typeof Tag;

  beforeAll(async () => {
    ({ db } = await boot());
    A = Account.bind(db);
    T = Tag.bind(db);
  });
  beforeEach(async () => {
    if (kind === 'sql') await createTables(db as SqlDb, snapshot);
    else await createCollections(db as MongoLike, snapshot);
  });
  afterAll(async () => {
    if (db && kind === 'sql') await dropTables(db as SqlDb, snapshot).catch(() => undefined);
    if (db && kind === 'mongo') await (db as MongoDb).db.dropDatabase().catch(() => undefined);
    await stopAll();
  });

  it('creates with defaults and reads every type back the same way', async () => {
    // node:sqlite reads INTEGER columns as JS numbers: beyond 2^53 it refuses the row (documented limit).
    const big = name === 'SQLite' ? '9007199254740991' : '9007199254740993';
    const seenAt = new Date('2024-03-01T10:20:30.456Z');
    const created = await A.create({
      email: 'ada@example.com',
      name: 'Ada',
      age: 36,
      score: 1.5,
      birthday: '1815-12-10',
      seenAt,
      meta: { tags: ['math', 'engines'] },
      balance: '1234.50',
      visits: big,
    });
    expect(created).toMatchObject({
      id: 1,
      email: 'ada@example.com',
      name: 'Ada',
      role: 'member',
      age: 36,
      score: 1.5,
      active: true,
      birthday: '1815-12-10',
      seenAt,
      meta: { tags: ['math', 'engines'] },
      visits: big,
    });
    expect(Number(created.balance)).toBe(1234.5);
    expect(created.token).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.created_at).toBeInstanceOf(Date);
    expect(created.updated_at.getTime()).toBe(created.created_at.getTime());
    const found = await A.find(created.id);
    expect(found).toEqual(created);
    expect(await A.findBy({ email: 'ada@example.com' })).toEqual(created);
    const bare = await A.create({ email: 'bob@example.com' });
    expect(bare).toMatchObject({ id: 2, name: null, age: null, birthday: null, seenAt: null, meta: null, active: true, visits: '0' });
    expect(Object.keys(bare)).toEqual(A.fields);
    // A key of the wrong shape can match no row: undefined, not a database error.
    expect(await A.find('nope' as unknown as number)).toBeUndefined();
    expect(await A.find(999)).toBeUndefined();
  });

  it('answers 404 for missing rows, 409 for a unique violation, 400 for invalid input', async () => {
    await A.create({ email: 'ada@example.com' });
    await expect(A.findOrFail(42)).rejects.toMatchObject({ code: 'db.not_found', status: 404 });
    await expect(A.findByOrFail({ email: 'nobody@example.com' })).rejects.toMatchObject({ code: 'db.not_found', status: 404 });
    await expect(A.update(42, { name: 'x' })).rejects.toMatchObject({ code: 'db.not_found', status: 404 });
    await expect(A.delete(42)).rejects.toMatchObject({ code: 'db.not_found', status: 404 });
    const dup = await A.create({ email: 'ada@example.com' }).catch((e: unknown) => e);
    expect(dup).toMatchObject({ code: 'db.conflict', status: 409 });
    expect(JSON.stringify((dup as { details: unknown }).details)).not.toContain('ada@example.com');
    await expect(A.create({ email: 'x@example.com', role: 'owner' as 'admin' })).rejects.toMatchObject({
      code: 'validation.failed',
      status: 400,
    });
    await expect(A.update({}, { name: 'everyone' })).rejects.toMatchObject({ code: 'model.invalid_where', status: 400 });
    await expect(A.delete({})).rejects.toMatchObject({ code: 'model.invalid_where', status: 400 });
    expect(await A.count()).toBe(1);
    // U+0000 in a string: PostgreSQL cannot store it (400, nothing written); the others keep it as sent.
    const nul = await A.create({ email: 'nul\u0000@example.com' }).catch((e: unknown) => e);
    if (name === 'PGlite' || name === 'PostgreSQL') {
      expect(nul).toMatchObject({ code: 'db.invalid_value', status: 400 });
      expect(await A.count()).toBe(1);
    } else expect(nul).toMatchObject({ email: 'nul\u0000@example.com' });
  });

  it('updates by id and by where, deletes, counts and checks existence', async () => {
    const a = await A.create({ email: 'a@example.com', age: 20 });
    await A.createMany([
      { email: 'b@example.com', age: 30 },
      { email: 'c@example.com', age: 40, role: 'admin' },
    ]);
    await new Promise((r) => setTimeout(r, 5)); // so updated_at can differ from created_at (ms resolution)
    const updated = await A.update(a.id, { name: 'Alice', meta: { tags: ['x'] } });
    expect(updated).toMatchObject({ id: a.id, name: 'Alice', meta: { tags: ['x'] }, age: 20 });
    expect(updated.updated_at.getTime()).toBeGreaterThan(a.updated_at.getTime());
    expect(updated.created_at).toEqual(a.created_at);
    expect(await A.update({ age: { gte: 30 } }, { active: false })).toBe(2);
    expect(await A.count({ active: false })).toBe(2);
    expect(await A.count({ role: 'admin', active: false })).toBe(1);
    expect(await A.exists({ email: { like: 'c@%' } })).toBe(true);
    expect(await A.exists({ email: { like: 'z%' } })).toBe(false);
    expect(await A.count({ age: { in: [20, 40] } })).toBe(2);
    expect(await A.count({ age: { in: [] } })).toBe(0);
    expect(await A.count({ name: null })).toBe(2);
    expect(await A.count({ name: { isNull: false } })).toBe(1);
    expect(await A.count({ email: { ne: 'a@example.com' }, age: { lt: 35 } })).toBe(1);
    await A.delete(a.id);
    expect(await A.find(a.id)).toBeUndefined();
    expect(await A.delete({ role: 'admin' })).toBe(1);
    expect(await A.count()).toBe(1);
  });

  it('createMany returns rows in input order; upsert inserts then updates on the unique key', async () => {
    const rows = await T.createMany([
      { label: 'zeta', rank: 1 },
      { label: 'alpha', rank: 2 },
      { label: 'mid', rank: 3 },
    ]);
    expect(rows.map((r) => r.label)).toEqual(['zeta', 'alpha', 'mid']);
    expect(await T.find(rows[1]?.code as string)).toEqual(rows[1]);

    const first = await A.upsert({ email: 'u@example.com', name: 'First', age: 1 }, { conflict: ['email'] });
    const again = await A.upsert({ email: 'u@example.com', name: 'Second', age: 2 }, { conflict: ['email'], update: ['name'] });
    expect(again).toMatchObject({ id: first.id, email: 'u@example.com', name: 'Second', age: 1 });
    expect(again.created_at).toEqual(first.created_at);
    expect(await A.count()).toBe(1);
    const tag = await T.upsert({ label: 'alpha', rank: 2 }, { conflict: ['label', 'rank'] });
    expect(tag.code).toBe(rows[1]?.code);
    await expect(A.upsert({ email: 'v@example.com' }, { conflict: ['name'] })).rejects.toMatchObject({ code: 'model.invalid_upsert' });
  });

  it('pages with opaque cursors; every row once while rows are inserted between pages', async () => {
    const originals = await A.createMany(
      Array.from({ length: 23 }, (_, i) => ({ email: `p${String(i).padStart(2, '0')}@example.com`, score: i % 5 })),
    );
    const seenAsc: number[] = [];
    const seenDesc: number[] = [];
    let extra = 0;
    for (const [orderBy, seen] of [
      [undefined, seenAsc],
      [{ score: 'desc', email: 'asc' }, seenDesc],
    ] as const) {
      let cursor: string | null = null;
      do {
        // A concurrent insert beside each page fetch: keyset pages neither skip nor repeat rows.
        const [page]: [Awaited<ReturnType<typeof A.list>>, unknown] = await Promise.all([
          A.list({ limit: 5, cursor, ...(orderBy ? { orderBy } : {}) }),
          A.create({ email: `new${extra++}@example.com`, score: 2 }),
        ]);
        seen.push(...page.items.map((r) => r.id));
        cursor = page.nextCursor;
      } while (cursor);
    }
    const ids = originals.map((r) => r.id);
    for (const seen of [seenAsc, seenDesc]) {
      expect(new Set(seen).size).toBe(seen.length);
      expect(ids.every((id) => seen.includes(id))).toBe(true);
    }
    // Ascending by id: the rows inserted meanwhile come after the cursor, so they are seen too.
    expect(seenAsc).toEqual([...seenAsc].sort((a, b) => a - b));
    const page = await A.list({ where: { score: { gte: 3 } }, orderBy: { score: 'desc' }, limit: 100 });
    expect(page.nextCursor).toBeNull();
    expect(page.items.map((r) => r.score)).toEqual([...Array(4).fill(4), ...Array(4).fill(3)]);
    await expect(A.list({ cursor: 'forged' })).rejects.toMatchObject({ code: 'model.invalid_cursor', status: 400 });
    await expect(A.list({ limit: 100_000 })).rejects.toMatchObject({ code: 'model.invalid_limit', status: 400 });
    await expect(A.list({ orderBy: { name: 'asc' } })).rejects.toMatchObject({ code: 'model.invalid_order', status: 400 });
  });

  if (kind === 'sql') {
    it('commits and rolls back transactions; nested ones are savepoints', async () => {
      const result = await A.transaction(async (tx) => {
        expect(tx.kind).toBe('sql');
        await A.create({ email: 'in-tx@example.com' });
        // Visible inside the transaction (same connection).
        expect(await A.count()).toBe(1);
        await A.transaction(async () => {
          await A.create({ email: 'inner-ok@example.com' });
        });
        await A.transaction(async () => {
          await A.create({ email: 'inner-fails@example.com' });
          throw new Error('inner failure');
        }).catch((e: Error) => expect(e.message).toBe('inner failure'));
        return 'done';
      });
      expect(result).toBe('done');
      const emails = (await A.list()).items.map((r) => r.email).sort();
      expect(emails).toEqual(['in-tx@example.com', 'inner-ok@example.com']);
      await expect(
        A.transaction(async () => {
          await A.create({ email: 'rolled-back@example.com' });
          await A.create({ email: 'in-tx@example.com' }); // 409 inside: the whole transaction rolls back
        }),
      ).rejects.toMatchObject({ code: 'db.conflict', status: 409 });
      expect(await A.exists({ email: 'rolled-back@example.com' })).toBe(false);
    });

    it('offers the query builder as an escape hatch, inside transactions too', async () => {
      await A.createMany([
        { email: 'q1@example.com', age: 5 },
        { email: 'q2@example.com', age: 7 },
      ]);
      const rows = await A.query().select(['email']).where('age', '>', 6).execute();
      expect(rows).toEqual([{ email: 'q2@example.com' }]);
      await A.transaction(async (tx) => {
        await A.query().where('age', '=', 5).select('id').execute();
        expect(tx.kysely()).toBe(A.kysely());
      });
      expect(() => A.collection()).toThrow(expect.objectContaining({ code: 'model.wrong_backend' }));
    });
  } else {
    it('refuses transactions on FerretDB with a typed error instead of pretending', async () => {
      await expect(A.transaction(async () => A.create({ email: 'never@example.com' }))).rejects.toMatchObject({
        code: 'model.transactions_unsupported',
        status: 501,
      });
      expect(await A.count()).toBe(0);
      const docs = A.collection() as Collection<Document>;
      await A.create({ email: 'doc@example.com' });
      expect(await docs.findOne({ email: 'doc@example.com' })).toMatchObject({ _id: 1 });
      expect(() => A.query()).toThrow(expect.objectContaining({ code: 'model.wrong_backend' }));
    });
  }

  it('types rows from the definition', async () => {
    const row: RowOf<typeof Account> = await A.create({ email: 'typed@example.com' });
    const created: Date = row.created_at;
    const age: number | null = row.age;
    expect([created instanceof Date, age]).toEqual([true, null]);
  });
});
