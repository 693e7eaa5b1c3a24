/**
 * The SqlDb contract of @mega/db-postgres (`kysely()`, `toMegaError()`, `dialect`) on embedded PGlite
 * and on a real PostgreSQL: typed queries, the error mapping (409 conflict / constraint, 504 timeout,
 * 503 unavailable with the URL redacted), transactions and savepoints, and on PGlite that a Kysely
 * transaction holds the one connection (another caller's statement never runs inside it).
 */
import { isSqlDb } from '@mega/adapters';
import type { Kernel } from '@mega/kernel';
import { bootPlugins, exposedText, stopAll, waitUntil } from '@mega/testing';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import type { PostgresDb } from '../src/index.js';
import postgres from '../src/index.js';

const env = serviceEnv();

interface Tables {
  users: { id: number; email: string };
  notes: { id: number; owner: number | null };
}

describe.each([
  { name: 'PGlite (memory://)', url: 'memory://', driver: 'pglite' },
  { name: 'PostgreSQL', url: env.DATABASE_URL, driver: 'postgres' },
])('SqlDb on $name', ({ url, driver }) => {
  let kernel: Kernel;
  let db: PostgresDb;
  let k: Kysely<Tables>;
  // Per-run table names, typed as the keys of the table map.
  const users = `mega_k_users_${driver}_${process.pid}` as 'users';
  const notes = `mega_k_notes_${driver}_${process.pid}` as 'notes';

  beforeAll(async () => {
    ({ kernel } = await bootPlugins({ plugins: [postgres], services: { dbs: { primary: { driver: 'postgres', url } } } }));
    db = kernel.apps[0]?.db() as PostgresDb;
    k = db.kysely<Tables>();
    await db.exec(`drop table if exists ${notes}; drop table if exists ${users};
      create table ${users} (id int primary key, email text not null unique);
      create table ${notes} (id int primary key, owner int references ${users}(id))`);
  });
  afterAll(async () => {
    await db?.exec(`drop table if exists ${notes}; drop table if exists ${users}`).catch(() => undefined);
    await stopAll();
  });

  it('implements SqlDb: dialect postgres, one Kysely instance, typed queries', async () => {
    expect(isSqlDb(db)).toBe(true);
    expect(db.dialect).toBe('postgres');
    expect(db.kysely()).toBe(k);
    await k.insertInto(users).values({ id: 1, email: 'ada@example.com' }).execute();
    const row = await k.selectFrom(users).select(['id', 'email']).where('id', '=', 1).executeTakeFirstOrThrow();
    expect(row).toEqual({ id: 1, email: 'ada@example.com' });
    // Kysely statements count in the adapter's stats.
    expect(db.stats().operations).toBeGreaterThanOrEqual(2);
  });

  it('unique violation → db.conflict 409, FK violation → db.constraint 409, without the offending values', async () => {
    const dup = await k
      .insertInto(users)
      .values({ id: 2, email: 'ada@example.com' })
      .execute()
      .catch((e: unknown) => db.toMegaError(e));
    expect(dup).toMatchObject({ code: 'db.conflict', status: 409, details: { alias: 'primary', sqlState: '23505', table: users } });
    expect(exposedText(dup)).not.toContain('ada@example.com');
    const fk = await k
      .insertInto(notes)
      .values({ id: 1, owner: 424242 })
      .execute()
      .catch((e: unknown) => db.toMegaError(e));
    expect(fk).toMatchObject({ code: 'db.constraint', status: 409, details: { sqlState: '23503' } });
    expect(exposedText(fk)).not.toContain('424242');
    // A MegaError passes through unchanged; other SQL errors are db.query_failed.
    expect(db.toMegaError(dup)).toBe(dup);
    const bad = await sql`select * from no_such_table_k`.execute(k).catch((e: unknown) => db.toMegaError(e));
    expect(bad).toMatchObject({ code: 'db.query_failed', status: 500, details: { sqlState: '42P01' } });
  });

  it('values the column cannot hold (class 22: U+0000 in text, bad integer) → db.invalid_value 400, values masked', async () => {
    const nul = await k
      .insertInto(users)
      .values({ id: 30, email: 'nul\u0000secret@example.com' })
      .execute()
      .catch((e: unknown) => db.toMegaError(e));
    expect(nul).toMatchObject({
      code: 'db.invalid_value',
      status: 400,
      details: { alias: 'primary', sqlState: expect.stringMatching(/^22/) },
    });
    expect(exposedText(nul)).not.toContain('secret');
    const int = await db.query(`select $1::int as n`, ['not-a-number-secret']).catch((e: unknown) => e);
    expect(int).toMatchObject({ code: 'db.invalid_value', status: 400, details: { sqlState: '22P02' } });
    expect(exposedText(int)).not.toContain('not-a-number-secret');
    // Nothing was written.
    expect(await k.selectFrom(users).select('id').where('id', '=', 30).executeTakeFirst()).toBeUndefined();
  });

  it('transactions commit and roll back; savepoints nest', async () => {
    await k.transaction().execute(async (trx) => {
      await trx.insertInto(users).values({ id: 10, email: 'ten@example.com' }).execute();
    });
    await expect(
      k.transaction().execute(async (trx) => {
        await trx.insertInto(users).values({ id: 11, email: 'eleven@example.com' }).execute();
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    const trx = await k.startTransaction().execute();
    await trx.insertInto(users).values({ id: 12, email: 'twelve@example.com' }).execute();
    const sp = await trx.savepoint('inner').execute();
    await sp.insertInto(users).values({ id: 13, email: 'thirteen@example.com' }).execute();
    await sp.rollbackToSavepoint('inner').execute();
    await trx.commit().execute();
    const ids = await k.selectFrom(users).select('id').where('id', '>=', 10).orderBy('id').execute();
    expect(ids.map((r) => r.id)).toEqual([10, 12]);
  });

  it("a statement from elsewhere during a Kysely transaction is not part of it (the transaction's rollback keeps it)", async () => {
    let inside!: () => void;
    const entered = new Promise<void>((r) => {
      inside = r;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const tx = k.transaction().execute(async (trx) => {
      await trx.insertInto(users).values({ id: 20, email: 'twenty@example.com' }).execute();
      inside();
      await gate;
      throw new Error('roll back');
    });
    await entered;
    // Concurrent writes through the raw API and through Kysely outside the transaction.
    const raw = db.query(`insert into ${users} (id, email) values (21, 'raw@example.com')`);
    const viaKysely = k.insertInto(users).values({ id: 22, email: 'kysely@example.com' }).execute();
    release();
    await expect(tx).rejects.toThrow('roll back');
    await raw;
    await viaKysely;
    const ids = await k.selectFrom(users).select('id').where('id', '>=', 20).orderBy('id').execute();
    expect(ids.map((r) => r.id)).toEqual([21, 22]);
  });
});

describe('SqlDb on a PostgreSQL server only', () => {
  afterEach(stopAll);

  it('statement timeout through Kysely → db.timeout 504', async () => {
    const { kernel } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { primary: { driver: 'postgres', url: env.DATABASE_URL, statementTimeoutMs: 200 } } },
    });
    const db = kernel.apps[0]?.db() as PostgresDb;
    const err = await sql`select pg_sleep(5)`.execute(db.kysely()).catch((e: unknown) => db.toMegaError(e));
    expect(err).toMatchObject({ code: 'db.timeout', status: 504, details: { sqlState: '57014' } });
  });

  it('a connection terminated inside a Kysely transaction rejects it with db.unavailable; the process lives and the pool serves again', async () => {
    const { kernel, logs } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { ktx: { driver: 'postgres', url: env.DATABASE_URL, max: 2 } } },
    });
    const db = kernel.apps[0]?.db('ktx') as PostgresDb;
    const k = db.kysely();
    const tx = k.transaction().execute(async (trx) => {
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
      const admin = new pg.Client({ connectionString: env.DATABASE_URL });
      await admin.connect();
      try {
        await admin.query('select pg_terminate_backend($1)', [rows[0]?.pid]);
      } finally {
        await admin.end();
      }
      // The idle connection's death arrives as an 'error' event; the next statement fails.
      await waitUntil(() => logs.some((l) => String(l.msg).includes('connection lost during a transaction')), { timeoutMs: 10_000 });
      await sql`select 2`.execute(trx);
    });
    const err = await tx.catch((e: unknown) => db.toMegaError(e));
    expect(err).toMatchObject({ code: 'db.unavailable', status: 503 });
    const again = await sql<{ ok: number }>`select 1 as ok`.execute(k);
    expect(again.rows).toEqual([{ ok: 1 }]);
  });

  it('server down: Kysely errors map to db.unavailable with the password masked', async () => {
    const url = 'postgres://mega:hunter2@127.0.0.1:1/mega';
    const { kernel } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { primary: { driver: 'postgres', url, optional: true, connectTimeoutMs: 500 } } },
    });
    const db = kernel.apps[0]?.db() as PostgresDb;
    const err = await sql`select 1`.execute(db.kysely()).catch((e: unknown) => db.toMegaError(e));
    expect(err).toMatchObject({ code: 'db.unavailable', status: 503, details: { url: 'postgres://mega:***@127.0.0.1:1/mega' } });
    expect(exposedText(err)).not.toContain('hunter2');
  });
});
