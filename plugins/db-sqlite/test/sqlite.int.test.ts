/**
 * @mega/db-sqlite on real SQLite files (node:sqlite): the adapter conventions (ctx.db by alias,
 * health, stats, optional, URL checks), the SqlDb contract (kysely(), toMegaError()), WAL / busy
 * timeout / foreign keys, and that the one connection is held by a transaction.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { isSqlDb } from '@mega/adapters';
import type { Kernel } from '@mega/kernel';
import { bootPlugins, buildPlugins, exposedText, stopAll } from '@mega/testing';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SqliteDb } from '../src/index.js';
import sqlite from '../src/index.js';

interface Tables {
  users: { id: number; email: string; active: number; born: string | null };
  notes: { id: number; owner: number | null; body: string };
}

describe('db-sqlite on a file', () => {
  let kernel: Kernel;
  let dir: string;
  let db: SqliteDb;
  let k: Kysely<Tables>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mega-sqlite-'));
    ({ kernel } = await bootPlugins({
      plugins: [sqlite],
      dir,
      services: { dbs: { primary: { driver: 'sqlite', url: 'sqlite:./data/app.db', busyTimeoutMs: 100 } } },
    }));
    db = kernel.apps[0]?.db() as SqliteDb;
    k = db.kysely<Tables>();
    await db.exec(`create table users (id integer primary key, email text not null unique, active integer not null default 1, born text);
      create table notes (id integer primary key, owner integer references users(id), body text not null)`);
  });
  afterAll(async () => {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ctx.db() is the adapter; file under the project; WAL, foreign keys and busy timeout on', async () => {
    expect(isSqlDb(db)).toBe(true);
    expect(db.dialect).toBe('sqlite');
    expect(kernel.createContext(kernel.apps[0] as never).db('primary')).toBe(db);
    expect(db.url).toBe(join(dir, 'data', 'app.db'));
    expect(existsSync(db.url)).toBe(true);
    const pragma = async (name: string) => Object.values((await db.query(`pragma ${name}`)).rows[0] ?? {})[0];
    expect(await pragma('journal_mode')).toBe('wal');
    expect(await pragma('foreign_keys')).toBe(1);
    expect(await pragma('busy_timeout')).toBe(100);
  });

  it('query with parameters: rows, rowCount; booleans and dates are bound as 1/0 and ISO text', async () => {
    const born = new Date('1815-12-10T00:00:00.000Z');
    const ins = await db.query('insert into users (id, email, active, born) values (?, ?, ?, ?), (?, ?, ?, ?)', [
      1,
      'ada@example.com',
      true,
      born,
      2,
      'bob@example.com',
      false,
      undefined,
    ]);
    expect(ins.rowCount).toBe(2);
    const { rows, rowCount } = await db.query<{ id: number; active: number; born: string | null }>(
      'select id, active, born from users order by id',
    );
    expect(rowCount).toBe(2);
    expect(rows).toEqual([
      { id: 1, active: 1, born: born.toISOString() },
      { id: 2, active: 0, born: null },
    ]);
  });

  it('kysely(): typed queries; unique → db.conflict 409, FK → db.constraint 409, without values', async () => {
    expect(db.kysely()).toBe(k);
    const row = await k.selectFrom('users').select(['id', 'email']).where('email', '=', 'ada@example.com').executeTakeFirstOrThrow();
    expect(row).toEqual({ id: 1, email: 'ada@example.com' });
    const dup = await k
      .insertInto('users')
      .values({ id: 3, email: 'ada@example.com', active: 1, born: null })
      .execute()
      .catch((e: unknown) => db.toMegaError(e));
    expect(dup).toMatchObject({
      code: 'db.conflict',
      status: 409,
      details: { alias: 'primary', code: 'SQLITE_CONSTRAINT_UNIQUE', table: 'users', columns: ['email'] },
    });
    expect(exposedText(dup)).not.toContain('ada@example.com');
    // The raw API maps by itself.
    await expect(db.query('insert into users (id, email) values (1, ?)', ['other@example.com'])).rejects.toMatchObject({
      code: 'db.conflict',
      details: { code: 'SQLITE_CONSTRAINT_PRIMARYKEY', table: 'users', columns: ['id'] },
    });
    const fk = await k
      .insertInto('notes')
      .values({ id: 1, owner: 999, body: 'orphan' })
      .execute()
      .catch((e: unknown) => db.toMegaError(e));
    expect(fk).toMatchObject({ code: 'db.constraint', status: 409, details: { code: 'SQLITE_CONSTRAINT_FOREIGNKEY' } });
    expect(db.toMegaError(fk)).toBe(fk);
    // RETURNING rows, affected-row counts and insert ids reach Kysely.
    const returned = await k
      .insertInto('notes')
      .values({ id: 5, owner: 1, body: 'five' })
      .returning(['id', 'body'])
      .executeTakeFirstOrThrow();
    expect(returned).toEqual({ id: 5, body: 'five' });
    const updated = await k.updateTable('notes').set({ body: 'FIVE' }).where('id', '=', 5).executeTakeFirstOrThrow();
    expect(updated.numUpdatedRows).toBe(1n);
    const inserted = await k.insertInto('notes').values({ id: 6, owner: 1, body: 'six' }).executeTakeFirstOrThrow();
    expect(inserted.insertId).toBe(6n);
    expect((await k.deleteFrom('notes').where('id', 'in', [5, 6]).executeTakeFirstOrThrow()).numDeletedRows).toBe(2n);
    await expect(db.query('select * from no_such_table')).rejects.toMatchObject({
      code: 'db.query_failed',
      status: 500,
      details: { code: 'SQLITE_ERROR', statement: 'select * from no_such_table' },
    });
  });

  it('transactions commit and roll back; savepoints nest; what fn throws is rethrown as it is', async () => {
    await db.tx(async (t) => {
      await t.query("insert into notes (id, owner, body) values (10, 1, 'kept')");
    });
    const mine = new Error('changed my mind');
    await expect(
      db.tx(async (t) => {
        await t.query("insert into notes (id, owner, body) values (11, 1, 'dropped')");
        throw mine;
      }),
    ).rejects.toBe(mine);
    const trx = await k.startTransaction().execute();
    await trx.insertInto('notes').values({ id: 12, owner: 1, body: 'outer' }).execute();
    const sp = await trx.savepoint('inner').execute();
    await sp.insertInto('notes').values({ id: 13, owner: 1, body: 'inner' }).execute();
    await sp.rollbackToSavepoint('inner').execute();
    await trx.commit().execute();
    const ids = await k.selectFrom('notes').select('id').orderBy('id').execute();
    expect(ids.map((r) => r.id)).toEqual([10, 12]);
  });

  it('a statement from elsewhere during a transaction waits for it and is not rolled back with it', async () => {
    let inside!: () => void;
    const entered = new Promise<void>((r) => {
      inside = r;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const tx = k.transaction().execute(async (trx) => {
      await trx.insertInto('notes').values({ id: 20, owner: 1, body: 'in tx' }).execute();
      inside();
      await gate;
      throw new Error('roll back');
    });
    await entered;
    const raw = db.query("insert into notes (id, owner, body) values (21, 1, 'raw')");
    const built = k.insertInto('notes').values({ id: 22, owner: 1, body: 'built' }).execute();
    release();
    await expect(tx).rejects.toThrow('roll back');
    await Promise.all([raw, built]);
    const ids = await k.selectFrom('notes').select('id').where('id', '>=', 20).orderBy('id').execute();
    expect(ids.map((r) => r.id)).toEqual([21, 22]);
  });

  it('another connection holding the write lock past busy_timeout → db.timeout 504; free again afterwards', async () => {
    const other = new DatabaseSync(db.url);
    other.exec('begin immediate');
    try {
      await expect(db.query("insert into notes (id, owner, body) values (30, 1, 'blocked')")).rejects.toMatchObject({
        code: 'db.timeout',
        status: 504,
        details: { code: 'SQLITE_BUSY' },
      });
      const err = await k
        .transaction()
        .execute(async (trx) => trx.insertInto('notes').values({ id: 31, owner: 1, body: 'blocked' }).execute())
        .catch((e: unknown) => db.toMegaError(e));
      expect(err).toMatchObject({ code: 'db.timeout' });
    } finally {
      other.exec('rollback');
      other.close();
    }
    await db.query("insert into notes (id, owner, body) values (30, 1, 'free')");
  });

  it('health check db:primary answers; stats count statements, errors, transactions', async () => {
    const health = kernel.healthChecks().find((h) => h.name === 'db:primary');
    expect(health?.plugin).toBe('@mega/db-sqlite');
    await expect(health?.check()).resolves.toBeUndefined();
    const s = db.stats();
    expect(s).toMatchObject({ driver: 'sqlite', alias: 'primary', url: db.url, transactions: 2, rollbacks: 1 });
    expect(s.operations).toBeGreaterThan(10);
    expect(s.errors).toBeGreaterThanOrEqual(4);
  });
});

describe('db-sqlite boot and configuration', () => {
  afterEach(stopAll);

  it('default file .mega/sqlite/<alias>.db; :memory: aliases; unknown alias lists the known ones', async () => {
    const { kernel, dir } = await bootPlugins({
      plugins: [sqlite],
      services: { dbs: { primary: { driver: 'sqlite' }, scratch: { driver: 'sqlite3', url: ':memory:' } } },
    });
    const app = kernel.apps[0];
    const primary = app?.db() as SqliteDb;
    expect(primary.url).toBe(join(dir, '.mega', 'sqlite', 'primary.db'));
    expect(existsSync(primary.url)).toBe(true);
    const scratch = app?.db('scratch') as SqliteDb;
    expect(scratch.url).toBe(':memory:');
    expect((await sql<{ v: number }>`select 41 + 1 as v`.execute(scratch.kysely())).rows).toEqual([{ v: 42 }]);
    expect(() => app?.db('nope')).toThrow(
      expect.objectContaining({ code: 'adapter.unknown_alias', details: expect.objectContaining({ known: ['primary', 'scratch'] }) }),
    );
  });

  it('a server URL given to the sqlite driver stops boot, its password masked', async () => {
    const err = (await buildPlugins({
      plugins: [sqlite],
      services: { dbs: { primary: { driver: 'sqlite', url: 'postgres://mega:hunter2@127.0.0.1/mega' } } },
    })
      .kernel.start()
      .catch((e: unknown) => e)) as Error;
    expect(err).toMatchObject({ code: 'adapter.invalid_url' });
    expect(err.message).toContain('postgres://mega:***@127.0.0.1/mega');
    expect(exposedText(err)).not.toContain('hunter2');
  });

  it('a file that cannot be opened fails boot with db.unavailable; optional boots and opens it once it can', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mega-sqlite-'));
    // A regular file where the database's directory should be: mkdir and open fail.
    writeFileSync(join(dir, 'blocked'), 'not a directory');
    const url = `sqlite:${join(dir, 'blocked', 'app.db')}`;
    const err = (await buildPlugins({ plugins: [sqlite], services: { dbs: { primary: { driver: 'sqlite', url } } } })
      .kernel.start()
      .catch((e: unknown) => e)) as Error;
    expect(err).toMatchObject({ code: 'db.unavailable', details: { alias: 'primary', url: join(dir, 'blocked', 'app.db') } });
    expect(err.message).toContain('db "primary" cannot open');

    const { kernel } = await bootPlugins({ plugins: [sqlite], services: { dbs: { primary: { driver: 'sqlite', url, optional: true } } } });
    const db = kernel.apps[0]?.db() as SqliteDb;
    await expect(db.query('select 1')).rejects.toMatchObject({ code: 'db.unavailable', status: 503 });
    rmSync(join(dir, 'blocked'));
    expect((await db.query<{ ok: number }>('select 1 as ok')).rows).toEqual([{ ok: 1 }]);
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  });
});
