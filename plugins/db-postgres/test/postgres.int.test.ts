/**
 * @mega/db-postgres against embedded PGlite and a real PostgreSQL (scripts/services.sh): the same
 * suite runs on both, then server-only behaviour (statement timeout, terminated backends) and
 * boot-time failures.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernel } from '@mega/kernel';
import { getApp } from '@mega/kernel';
import { bootPlugins, buildPlugins, stopAll } from '@mega/testing';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../scripts/test/procs.js';
import { restartService } from '../../../scripts/test/restart.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import type { PostgresDb } from '../src/index.js';
import postgres from '../src/index.js';

const env = serviceEnv();

describe.each([
  { name: 'PGlite (memory://)', url: 'memory://', driver: 'pglite' },
  { name: 'PostgreSQL', url: env.DATABASE_URL, driver: 'postgres' },
])('db-postgres on $name', ({ url, driver }) => {
  let kernel: Kernel;
  let db: PostgresDb;
  const app = `pg${driver}`;
  const table = `mega_t_${driver}_${process.pid}`;

  beforeAll(async () => {
    ({ kernel } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { primary: { driver: 'postgres', url } } },
      apps: { [app]: {} },
    }));
    db = kernel.createContext(kernel.apps[0] as never).db();
    await db.exec(`drop table if exists ${table}; create table ${table} (id int primary key, name text not null, big int8)`);
  });
  afterAll(async () => {
    await db?.exec(`drop table if exists ${table}`).catch(() => undefined);
    await stopAll();
  });

  it('ctx.db(), ctx.db(alias) and getApp(name).db() are the same adapter', () => {
    const ctx = kernel.createContext(kernel.apps[0] as never);
    expect(ctx.db('primary')).toBe(db);
    expect(getApp(app).db()).toBe(db);
    expect(db.driver).toBe(driver);
  });

  it('query with parameters; int8 comes back as a string on both drivers', async () => {
    const ins = await db.query(`insert into ${table} (id, name, big) values ($1, $2, $3), ($4, $5, $6)`, [
      1,
      'ada',
      9007199254740993n.toString(),
      2,
      'bob',
      1,
    ]);
    expect(ins.rowCount).toBe(2);
    const { rows, rowCount } = await db.query<{ id: number; name: string; big: string }>(`select id, name, big from ${table} order by id`);
    expect(rowCount).toBe(2);
    expect(rows).toEqual([
      { id: 1, name: 'ada', big: '9007199254740993' },
      { id: 2, name: 'bob', big: '1' },
    ]);
    const count = await db.query<{ n: string }>(`select count(*) as n from ${table}`);
    expect(count.rows[0]?.n).toBe('2');
  });

  it('SQL errors are db.query_failed with the SQL state; a unique violation is db.conflict (409)', async () => {
    await expect(db.query('select * from no_such_table_here')).rejects.toMatchObject({
      code: 'db.query_failed',
      details: { sqlState: '42P01', alias: 'primary' },
    });
    await expect(db.query(`insert into ${table} (id, name) values (1, 'dup')`)).rejects.toMatchObject({
      code: 'db.conflict',
      status: 409,
      details: { sqlState: '23505' },
    });
  });

  it('tx commits when fn resolves and rolls back when it throws', async () => {
    const value = await db.tx(async (t) => {
      await t.query(`insert into ${table} (id, name) values (10, 'in-tx')`);
      const { rows } = await t.query<{ n: string }>(`select count(*) as n from ${table}`);
      return rows[0]?.n;
    });
    expect(value).toBe('3');
    await expect(
      db.tx(async (t) => {
        await t.query(`insert into ${table} (id, name) values (11, 'rolled back')`);
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    await expect(
      db.tx(async (t) => {
        await t.query(`insert into ${table} (id, name) values (12, 'rolled back too')`);
        await t.query(`insert into ${table} (id, name) values (12, 'duplicate')`);
      }),
    ).rejects.toMatchObject({ code: 'db.conflict', details: { sqlState: '23505' } });
    const { rows } = await db.query<{ id: number }>(`select id from ${table} where id >= 10 order by id`);
    expect(rows).toEqual([{ id: 10 }]);
  });

  it('stats count operations, errors, latency and transactions; the readiness check answers', async () => {
    await db.query('select 1');
    const health = kernel.healthChecks().find((h) => h.name === 'db:primary');
    expect(health?.plugin).toBe('@mega/db-postgres');
    await expect(health?.check()).resolves.toBeUndefined();
    const s = db.stats();
    expect(s).toMatchObject({ driver, alias: 'primary', transactions: 3, rollbacks: 2 });
    expect(s.operations).toBeGreaterThan(5);
    expect(s.errors).toBe(3);
    expect(s.latency.maxMs).toBeGreaterThan(0);
    expect(s.latency.p99Ms).toBeGreaterThanOrEqual(s.latency.p50Ms);
  });
});

describe('db-postgres on a PostgreSQL server only', () => {
  afterEach(stopAll);

  it('statement timeout cancels a long query with db.timeout (57014)', async () => {
    const { kernel } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { primary: { driver: 'postgres', url: env.DATABASE_URL, statementTimeoutMs: 200 } } },
    });
    const db = kernel.apps[0]?.db() as PostgresDb;
    const started = Date.now();
    await expect(db.query('select pg_sleep(5)')).rejects.toMatchObject({ code: 'db.timeout', status: 504, details: { sqlState: '57014' } });
    expect(Date.now() - started).toBeLessThan(3000);
    expect((await db.query<{ ok: number }>('select 1 as ok')).rows).toEqual([{ ok: 1 }]);
  });

  it('a server that does not answer within the client-side bound: db.unavailable on every path', async () => {
    const { kernel } = await bootPlugins({
      plugins: [postgres],
      // No server-side timeout: only the client-side bound (pg's query_timeout, here 300 ms) ends the wait.
      services: { dbs: { primary: { driver: 'postgres', url: env.DATABASE_URL, statementTimeoutMs: 0, options: { query_timeout: 300 } } } },
    });
    const db = kernel.apps[0]?.db() as PostgresDb;
    const unavailable = { code: 'db.unavailable', status: 503 };
    const started = Date.now();
    await expect(db.query('select pg_sleep(3)')).rejects.toMatchObject(unavailable);
    await expect(db.execute({ sql: 'select pg_sleep(3)', parameters: [] })).rejects.toMatchObject(unavailable);
    await expect(db.tx((t) => t.query('select pg_sleep(3)'))).rejects.toMatchObject(unavailable);
    expect(Date.now() - started).toBeLessThan(2500);
    // Those connections were destroyed, not handed out again still running the statement.
    expect((await db.query<{ ok: number }>('select 1 as ok')).rows).toEqual([{ ok: 1 }]);
    expect((await db.execute<{ ok: number }>({ sql: 'select $1::int as ok', parameters: [2] })).rows).toEqual([{ ok: 2 }]);
    const k = db.kysely();
    await expect(
      k.executeQuery(sql`select pg_sleep(3)`.compile(k)).catch((e: unknown) => Promise.reject(db.toMegaError(e))),
    ).rejects.toMatchObject(unavailable);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it("pg_terminate_backend on the pool's connections: the next queries succeed", async () => {
    const { kernel } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { main: { driver: 'postgres', url: env.DATABASE_URL, max: 4 } } },
    });
    const db = kernel.apps[0]?.db('main') as PostgresDb;
    // Open several pooled connections.
    await Promise.all(Array.from({ length: 4 }, () => db.query('select pg_sleep(0.05)')));
    const admin = new pg.Client({ connectionString: env.DATABASE_URL });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ n: number }>(
        "select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where application_name = 'mega:main' and pid <> pg_backend_pid()",
      );
      expect(rows[0]?.n).toBeGreaterThanOrEqual(1);
    } finally {
      await admin.end();
    }
    for (let i = 0; i < 10; i++) expect((await db.query<{ i: number }>('select $1::int as i', [i])).rows[0]?.i).toBe(i);
    await db.tx(async (t) => t.query('select 1'));
  });

  it('every idle connection dead before its error is read: a statement and a BEGIN move on to the next one', async () => {
    const { kernel } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { race: { driver: 'postgres', url: env.DATABASE_URL, max: 4 } } },
    });
    const db = kernel.apps[0]?.db('race') as PostgresDb;
    const pool = db.native as pg.Pool;
    // pg's connection socket: paused, the server's FATAL for a terminated backend stays unread, as
    // on a loaded machine where the next query is sent before the error arrives (seen in CI).
    type Raw = pg.Client & { connection: { stream: NodeJS.ReadableStream & { isPaused(): boolean } }; _activeQuery: unknown };
    // pg's own list, replaced on each removal (boot's readiness check opened the first connection
    // before any listener here could see it).
    const clients = () => (pool as unknown as { _clients: Raw[] })._clients;
    const run = async (round: number) => {
      // Four statements at once: the pool opens a connection for each one no idle connection takes.
      await Promise.all(Array.from({ length: 4 }, () => db.query('select 1')));
      expect(pool.idleCount).toBe(4);
      const idle = [...clients()];
      expect(idle).toHaveLength(4);
      for (const c of idle) c.connection.stream.pause();
      const admin = new pg.Client({ connectionString: env.DATABASE_URL });
      await admin.connect();
      try {
        await admin.query(
          "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'mega:race' and pid <> pg_backend_pid()",
        );
        await until(
          async () =>
            (await admin.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where application_name = 'mega:race'"))
              .rows[0]?.n === 0
              ? true
              : undefined,
          10_000,
          'the backends gone',
        );
      } finally {
        await admin.end();
      }
      // A paused connection reads (and fails with 57P01) only once a statement was sent on it.
      const timer = setInterval(() => {
        for (const c of idle) if (c._activeQuery && c.connection.stream.isPaused()) c.connection.stream.resume();
      }, 1);
      try {
        if (round === 0) expect((await db.query<{ n: number }>('select 41 + 1 as n')).rows[0]?.n).toBe(42);
        else expect(await db.tx(async (t) => (await t.query<{ n: number }>('select 7 as n')).rows[0]?.n)).toBe(7);
      } finally {
        clearInterval(timer);
      }
      // Every dead connection was tried and dropped, none left in the pool.
      expect(idle.every((c) => !c.connection.stream.isPaused())).toBe(true);
    };
    await run(0);
    await run(1);
  });
});

describe('db-postgres when connections die (real PostgreSQL)', () => {
  afterEach(stopAll);

  it('A2: a transaction open during a PostgreSQL restart rejects with db.unavailable and the process lives', async () => {
    const { kernel, logs } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { main: { driver: 'postgres', url: env.DATABASE_URL, max: 2 } } },
    });
    const db = kernel.apps[0]?.db('main') as PostgresDb;
    let reached = false;
    const tx = db.tx(async (t) => {
      await t.query('select 1');
      // The server goes away while this transaction holds its connection (no query running):
      // before the fix the checked-out client's 'error' event had no listener and ended the process.
      await restartService('postgres');
      await t.query('select 2');
      reached = true;
    });
    await expect(tx).rejects.toMatchObject({ code: 'db.unavailable', status: 503 });
    expect(reached).toBe(false);
    expect(db.stats().rollbacks).toBe(1);
    // The process is alive and the pool serves again once the server answers.
    const ok = await until(
      async () => ((await db.query<{ ok: number }>('select 1 as ok')).rows[0]?.ok === 1 ? true : undefined),
      30_000,
      'a query after the restart',
    );
    expect(ok).toBe(true);
    await expect(db.tx(async (t) => (await t.query<{ n: number }>('select 3 as n')).rows[0]?.n)).resolves.toBe(3);
    expect(logs.some((l) => String(l.msg).includes('connection lost during a transaction'))).toBe(true);
    expect(JSON.stringify(logs)).not.toMatch(/secretKey|connectionParameters/);
  }, 60_000);

  it('19: the "idle connection lost" warning logs a redacted summary, never the client object (secretKey)', async () => {
    const url = env.DATABASE_URL;
    const password = new URL(url).password;
    const { kernel, logs } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { idle: { driver: 'postgres', url, max: 3, idleTimeoutMs: 60_000 } } },
    });
    const db = kernel.apps[0]?.db('idle') as PostgresDb;
    await Promise.all(Array.from({ length: 3 }, () => db.query('select pg_sleep(0.02)')));
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'mega:idle' and pid <> pg_backend_pid()",
      );
    } finally {
      await admin.end();
    }
    const line = await until(() => logs.find((l) => String(l.msg).includes('idle connection lost')), 10_000, 'the idle-loss warning');
    expect(line.err).toMatchObject({ type: expect.any(String), code: '57P01', message: expect.stringContaining('terminat') });
    const text = JSON.stringify(logs);
    expect(text).not.toMatch(/secretKey|processID|connectionParameters|"client"/);
    if (password.length >= 6) expect(text).not.toContain(password);
  });
});

describe('db-postgres boot and configuration', () => {
  afterEach(stopAll);

  it('no database declared: an embedded PGlite "primary" under .mega/pglite/primary', async () => {
    const { kernel } = await bootPlugins({ plugins: [postgres] });
    const db = kernel.apps[0]?.db() as PostgresDb;
    expect(db.driver).toBe('pglite');
    expect(db.url).toBe(join(kernel.dir, '.mega', 'pglite', 'primary'));
    expect(existsSync(join(kernel.dir, '.mega', 'pglite', 'primary', 'PG_VERSION'))).toBe(true);
    expect((await db.query<{ v: number }>('select 41 + 1 as v')).rows).toEqual([{ v: 42 }]);
  });

  it('a server that is down at boot fails boot naming the alias and URL (password masked)', async () => {
    const url = 'postgres://mega:secret@127.0.0.1:1/mega';
    const err = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { reports: { driver: 'postgres', url, connectTimeoutMs: 2000 } } },
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'db.unavailable', details: { alias: 'reports', url: 'postgres://mega:***@127.0.0.1:1/mega' } });
    expect((err as Error).message).toMatch(
      /\[@mega\/db-postgres\].*db "reports" cannot connect to postgres:\/\/mega:\*\*\*@127\.0\.0\.1:1\/mega/,
    );
    expect((err as Error).message).not.toContain('secret');
  });

  it('optional: true boots anyway; queries fail with db.unavailable', async () => {
    const { kernel } = await bootPlugins({
      plugins: [postgres],
      services: {
        dbs: { primary: { driver: 'postgres', url: 'postgres://mega:mega@127.0.0.1:1/mega', optional: true, connectTimeoutMs: 1000 } },
      },
    });
    const db = kernel.apps[0]?.db() as PostgresDb;
    await expect(db.query('select 1')).rejects.toMatchObject({ code: 'db.unavailable', status: 503 });
  });

  it('unknown alias, wrong driver, a driver whose plugin is missing, malformed URLs', async () => {
    const { kernel } = await bootPlugins({
      plugins: [postgres],
      services: { dbs: { primary: { driver: 'pglite', url: 'memory://' }, audit: { driver: 'pglite', url: 'memory://' } } },
    });
    expect(() => kernel.apps[0]?.db('nope')).toThrow(
      expect.objectContaining({ code: 'adapter.unknown_alias', details: { kind: 'dbs', alias: 'nope', known: ['primary', 'audit'] } }),
    );
    expect(() => kernel.apps[0]?.db('nope')).toThrow(/known: primary, audit/);
    await stopAll();
    const boot = (dbs: Record<string, { driver: string; url?: string }>) =>
      buildPlugins({ plugins: [postgres], services: { dbs } }).kernel.start();
    await expect(boot({ primary: { driver: 'mysql', url: 'mysql://x' } })).rejects.toMatchObject({
      code: 'adapter.unknown_driver',
      details: { alias: 'primary', driver: 'mysql' },
    });
    // The kernel knows no plugin by name: a driver no loaded plugin declares is unknown, with the known ones listed.
    await expect(boot({ docs: { driver: 'mongodb', url: 'mongodb://127.0.0.1/x' } })).rejects.toMatchObject({
      code: 'adapter.unknown_driver',
      details: { alias: 'docs', driver: 'mongodb', known: ['postgres', 'postgresql', 'pg', 'pglite'] },
    });
    await expect(boot({ primary: { driver: 'postgres', url: 'postgres//nohost' } })).rejects.toMatchObject({ code: 'adapter.invalid_url' });
    await expect(boot({ primary: { driver: 'postgres', url: 'mysql://x/y' } })).rejects.toMatchObject({ code: 'adapter.invalid_url' });
    await expect(boot({ primary: { driver: 'pglite', url: 'postgres://x/y' } })).rejects.toMatchObject({ code: 'adapter.invalid_url' });
  });
});
