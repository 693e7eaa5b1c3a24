/**
 * @mega/db-mariadb against the real MariaDB of scripts/services.sh: the adapter conventions (ctx.db
 * by alias, health, stats, optional, redacted URLs), the SqlDb contract (kysely(), toMegaError()),
 * statement timeout, and a server restart (a transaction open across it fails with db.unavailable,
 * the process lives, the pool serves again).
 */
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isSqlDb } from '@mega/adapters';
import type { Kernel } from '@mega/kernel';
import { bootPlugins, buildPlugins, exposedText, stopAll, waitUntil } from '@mega/testing';
import type { Generated, Kysely } from 'kysely';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { MariadbDb } from '../src/index.js';
import mariadb from '../src/index.js';

const SERVICES = join(import.meta.dirname, '..', '..', '..', 'scripts', 'services.sh');

function mariadbUrl(): string {
  if (process.env.MARIADB_URL) return process.env.MARIADB_URL;
  const line = execFileSync('bash', [SERVICES, 'env'], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.startsWith('MARIADB_URL='));
  if (!line) throw new Error('MARIADB_URL is not set and scripts/services.sh env did not print it');
  return line.slice('MARIADB_URL='.length);
}

const URL_ = mariadbUrl();
// Per-process table names, typed as the keys of the table map below.
const users = `mega_m_users_${process.pid}` as 'users';
const notes = `mega_m_notes_${process.pid}` as 'notes';

interface Tables {
  users: { id: number; email: string; n: Generated<string>; at: Date | null };
  notes: { id: number; owner: number | null };
}

describe('db-mariadb on MariaDB', () => {
  let kernel: Kernel;
  let db: MariadbDb;
  let k: Kysely<Tables>;

  beforeAll(async () => {
    ({ kernel } = await bootPlugins({ plugins: [mariadb], services: { dbs: { primary: { driver: 'mariadb', url: URL_ } } } }));
    db = kernel.apps[0]?.db() as MariadbDb;
    k = db.kysely<Tables>();
    await db.exec(`drop table if exists ${notes}; drop table if exists ${users};
      create table ${users} (id int primary key, email varchar(200) not null unique, n bigint not null default 0, at datetime(3) null) engine=InnoDB;
      create table ${notes} (id int primary key, owner int null, foreign key (owner) references ${users}(id)) engine=InnoDB`);
  });
  afterAll(async () => {
    await db?.exec(`drop table if exists ${notes}; drop table if exists ${users}`).catch(() => undefined);
    await stopAll();
  });

  it('ctx.db() is the adapter; SqlDb with dialect mysql; health db:primary answers', async () => {
    expect(kernel.createContext(kernel.apps[0] as never).db('primary')).toBe(db);
    expect(isSqlDb(db)).toBe(true);
    expect(db.dialect).toBe('mysql');
    expect(db.url).toBe(URL_.replace(/:[^:@/]+@/, ':***@'));
    const health = kernel.healthChecks().find((h) => h.name === 'db:primary');
    expect(health?.plugin).toBe('@mega/db-mariadb');
    await expect(health?.check()).resolves.toBeUndefined();
  });

  it('query with parameters; BIGINT and COUNT come back as strings (as pg does), dates in UTC', async () => {
    const at = new Date('2024-01-02T03:04:05.678Z');
    const ins = await db.query(`insert into ${users} (id, email, n, at) values (?, ?, ?, ?), (?, ?, ?, ?)`, [
      1,
      'ada@example.com',
      '9007199254740993',
      at,
      2,
      'bob@example.com',
      1,
      null,
    ]);
    expect(ins.rowCount).toBe(2);
    const { rows } = await db.query<{ id: number; n: string; at: Date | null }>(`select id, n, at from ${users} order by id`);
    expect(rows).toEqual([
      { id: 1, n: '9007199254740993', at },
      { id: 2, n: '1', at: null },
    ]);
    expect((await db.query<{ c: string }>(`select count(*) as c from ${users}`)).rows[0]?.c).toBe('2');
  });

  it('kysely(): typed queries; unique → db.conflict 409, FK → db.constraint 409, values never quoted', async () => {
    expect(db.kysely()).toBe(k);
    const row = await k.selectFrom(users).select(['id', 'email']).where('id', '=', 1).executeTakeFirstOrThrow();
    expect(row).toEqual({ id: 1, email: 'ada@example.com' });
    const dup = await k
      .insertInto(users)
      .values({ id: 3, email: 'ada@example.com' })
      .execute()
      .catch((e: unknown) => db.toMegaError(e));
    expect(dup).toMatchObject({
      code: 'db.conflict',
      status: 409,
      details: { alias: 'primary', errno: 1062, code: 'ER_DUP_ENTRY', key: expect.stringContaining('email') },
    });
    expect(exposedText(dup)).not.toContain('ada@example.com');
    await expect(db.query(`insert into ${users} (id, email) values (?, ?)`, [1, 'x@example.com'])).rejects.toMatchObject({
      code: 'db.conflict',
      details: { key: 'PRIMARY' },
    });
    const fk = await k
      .insertInto(notes)
      .values({ id: 1, owner: 777 })
      .execute()
      .catch((e: unknown) => db.toMegaError(e));
    expect(fk).toMatchObject({ code: 'db.constraint', status: 409, details: { errno: 1452 } });
    await k.insertInto(notes).values({ id: 2, owner: 1 }).execute();
    const referenced = await k
      .deleteFrom(users)
      .where('id', '=', 1)
      .execute()
      .catch((e: unknown) => db.toMegaError(e));
    expect(referenced).toMatchObject({ code: 'db.constraint', details: { errno: 1451 } });
    expect(db.toMegaError(fk)).toBe(fk);
    const updated = await k.updateTable(users).set({ email: 'ada@example.org' }).where('id', '=', 1).executeTakeFirstOrThrow();
    expect(updated.numUpdatedRows).toBe(1n);
    // A server message quoting a bound value: the value is masked.
    const bad = await db
      .query(`insert into ${users} (id, email) values (?, ?)`, ['secret-in-an-int', 'c@example.com'])
      .catch((e: unknown) => e);
    // A value the column cannot hold is the caller's input (SQLSTATE class 22): 400, value masked.
    expect(bad).toMatchObject({ code: 'db.invalid_value', status: 400, details: { sqlState: expect.stringMatching(/^22/) } });
    expect(exposedText(bad)).not.toContain('secret-in-an-int');
    const long = await db
      .query(`insert into ${users} (id, email) values (?, ?)`, [5, `${'x'.repeat(250)}@example.com`])
      .catch((e: unknown) => e);
    expect(long).toMatchObject({ code: 'db.invalid_value', status: 400, details: { sqlState: '22001' } });
    // Other SQL errors stay db.query_failed (500).
    const broken = await db.query(`select * from no_such_table_m`).catch((e: unknown) => e);
    expect(broken).toMatchObject({ code: 'db.query_failed', status: 500 });
  });

  it('transactions commit and roll back; savepoints nest', async () => {
    await db.tx(async (t) => {
      await t.query(`insert into ${users} (id, email) values (10, 'ten@example.com')`);
    });
    const mine = new Error('changed my mind');
    await expect(
      db.tx(async (t) => {
        await t.query(`insert into ${users} (id, email) values (11, 'eleven@example.com')`);
        throw mine;
      }),
    ).rejects.toBe(mine);
    const trx = await k.startTransaction().execute();
    await trx.insertInto(users).values({ id: 12, email: 'twelve@example.com' }).execute();
    const sp = await trx.savepoint('inner').execute();
    await sp.insertInto(users).values({ id: 13, email: 'thirteen@example.com' }).execute();
    await sp.rollbackToSavepoint('inner').execute();
    await trx.commit().execute();
    const ids = await k.selectFrom(users).select('id').where('id', '>=', 10).orderBy('id').execute();
    expect(ids.map((r) => r.id)).toEqual([10, 12]);
    expect(db.stats()).toMatchObject({ driver: 'mariadb', alias: 'primary', transactions: 2, rollbacks: 1 });
    expect(db.stats().operations).toBeGreaterThan(10);
  });
});

describe('db-mariadb boot, timeouts and failures', () => {
  afterEach(stopAll);

  it('statement timeout → db.timeout 504, raw and through Kysely', async () => {
    const { kernel } = await bootPlugins({
      plugins: [mariadb],
      services: { dbs: { primary: { driver: 'mysql', url: URL_, statementTimeoutMs: 200 } } },
    });
    const db = kernel.apps[0]?.db() as MariadbDb;
    const started = Date.now();
    await expect(db.query('select sleep(5) from (select 1 union select 2) t')).rejects.toMatchObject({ code: 'db.timeout', status: 504 });
    const err = await sql`select sleep(5) from (select 1 union select 2) t`.execute(db.kysely()).catch((e: unknown) => db.toMegaError(e));
    expect(err).toMatchObject({ code: 'db.timeout' });
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it('a server that is down fails boot naming the alias and the URL, password masked; optional boots and fails statements', async () => {
    const url = 'mysql://mega:hunter2@127.0.0.1:1/mega';
    const err = (await buildPlugins({
      plugins: [mariadb],
      services: { dbs: { reports: { driver: 'mariadb', url, connectTimeoutMs: 1000 } } },
    })
      .kernel.start()
      .catch((e: unknown) => e)) as Error;
    expect(err).toMatchObject({ code: 'db.unavailable', details: { alias: 'reports', url: 'mysql://mega:***@127.0.0.1:1/mega' } });
    expect(err.message).toContain('db "reports" cannot connect to mysql://mega:***@127.0.0.1:1/mega');
    expect(exposedText(err)).not.toContain('hunter2');

    const { kernel, logs } = await bootPlugins({
      plugins: [mariadb],
      services: { dbs: { reports: { driver: 'mariadb', url, optional: true, connectTimeoutMs: 1000 } } },
    });
    const db = kernel.apps[0]?.db() as MariadbDb;
    const failed = await db.query('select 1').catch((e: unknown) => e);
    expect(failed).toMatchObject({ code: 'db.unavailable', status: 503 });
    const viaKysely = await sql`select 1`.execute(db.kysely()).catch((e: unknown) => db.toMegaError(e));
    expect(viaKysely).toMatchObject({ code: 'db.unavailable' });
    expect(exposedText(failed, viaKysely, logs)).not.toContain('hunter2');
  });

  it('wrong URL scheme or a missing URL stops boot', async () => {
    const boot = (url: string | undefined) =>
      buildPlugins({ plugins: [mariadb], services: { dbs: { primary: { driver: 'mariadb', ...(url ? { url } : {}) } } } }).kernel.start();
    await expect(boot('postgres://u:p@127.0.0.1/x')).rejects.toMatchObject({ code: 'adapter.invalid_url' });
    await expect(boot(undefined)).rejects.toMatchObject({ code: 'config.invalid' });
  });

  it('a MariaDB restart: an open transaction rejects with db.unavailable, the process lives, the pool serves again', async () => {
    const { kernel } = await bootPlugins({
      plugins: [mariadb],
      services: { dbs: { main: { driver: 'mariadb', url: URL_, max: 2 } } },
    });
    const db = kernel.apps[0]?.db('main') as MariadbDb;
    let reached = false;
    const tx = db.tx(async (t) => {
      await t.query('select 1');
      await promisify(execFile)('bash', [SERVICES, 'restart', 'mariadb'], { timeout: 120_000 });
      await t.query('select 2');
      reached = true;
    });
    await expect(tx).rejects.toMatchObject({ code: 'db.unavailable', status: 503 });
    expect(reached).toBe(false);
    const ok = await waitUntil(async () => (await db.query<{ ok: number }>('select 1 as ok').catch(() => undefined))?.rows[0]?.ok === 1, {
      timeoutMs: 30_000,
      what: 'a statement after the restart',
    });
    expect(ok).toBe(true);
    expect((await sql<{ n: number }>`select 3 as n`.execute(db.kysely())).rows).toEqual([{ n: 3 }]);
  }, 90_000);
});
