/**
 * How migrations fail, on real servers: a failing migration (rolled back on Postgres/PGlite/SQLite,
 * resumable on MariaDB/MongoDB whose DDL commits), a file that throws when imported, a badly named
 * file, drift (an applied file edited), the production gate for destructive migrations, the boot
 * check (auto / requireApplied), and the locks (timeouts, Mongo fencing, one process racing itself).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AdapterRegistry, SqlDb } from '@mega/adapters';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import type { Db } from 'mongodb';
import { MongoClient } from 'mongodb';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { mongoLock } from '../src/lock.js';
import type { MigrationsService } from '../src/service.js';
import type { Kind, TestDb } from './support.js';
import { freshDb, KINDS, reconfigure, serviceUrl } from './support.js';

let dbs: TestDb[] = [];

afterEach(async () => {
  await stopAll();
  for (const d of dbs) await d.drop();
  dbs = [];
});

type Adapter = SqlDb | { driver: 'mongodb'; db: Db };

/** A migration creating table/collection `name`; `after` runs last (e.g. a throw). */
const creates = (name: string, after = '') => `export default {
  async up({ dialect, db, schema, step }) {
    await step('create ${name}', () =>
      dialect === 'mongo' ? db.createCollection('${name}') : schema.createTable('${name}').addColumn('id', 'integer').execute(),
    );
    ${after}
  },
  async down({ dialect, db, schema, step }) {
    await step('drop ${name}', () => (dialect === 'mongo' ? db.dropCollection('${name}') : schema.dropTable('${name}').execute()));
  },
};
`;

async function project(kind: Kind, migrations: Record<string, string>, config: Record<string, unknown> = { auto: false }, env?: string) {
  const files = Object.fromEntries(Object.entries(migrations).map(([n, src]) => [`migrations/${n}.ts`, src]));
  const dir = writeProject({ 'app.config.ts': 'export default {};\n', ...files });
  const db = await freshDb(kind, dir);
  dbs.push(db);
  reconfigure(dir, db, config);
  const booted = await bootProject(dir, env ? { env } : {});
  const s = booted.kernel.use<MigrationsService>('migrations');
  const adapter = booted.kernel.use<AdapterRegistry<Adapter>>('adapters:dbs').get('primary');
  return { dir, db, booted, s, adapter };
}

async function tables(adapter: Adapter): Promise<string[]> {
  if (!('kysely' in adapter)) return (await adapter.db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name).sort();
  return (await adapter.kysely().introspection.getTables()).map((t) => t.name).sort();
}

const states = async (s: MigrationsService) => (await s.status())[0]?.entries.map((e) => `${e.id.slice(15)}:${e.state}`);

describe.each(['pglite', 'postgres', 'sqlite'] as const)('a failing migration on %s', (kind) => {
  it('rolls back with nothing recorded, stops the batch, and runs once fixed', async () => {
    const { dir, s, adapter } = await project(kind, {
      '20260101000001-a': creates('a'),
      '20260101000002-half': creates('half', "throw new Error('boom in half');"),
      '20260101000003-c': creates('c'),
    });
    const err = await s.up({}).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'migrations.failed', details: { id: '20260101000002-half', direction: 'up', rolledBack: true } });
    expect((err as Error).message).toContain('boom in half');
    expect(await states(s)).toEqual(['a:applied', 'half:pending', 'c:pending']);
    expect(await tables(adapter)).toEqual(['a', 'mega_migrations']);

    writeFileSync(join(dir, 'migrations/20260101000002-half.ts'), creates('half'));
    await s.up({});
    expect(await states(s)).toEqual(['a:applied', 'half:applied', 'c:applied']);
    expect(await tables(adapter)).toEqual(['a', 'c', 'half', 'mega_migrations']);
  });
});

describe.each(['mariadb', 'mongo'] as const)('a failing migration on %s (DDL cannot roll back)', (kind) => {
  it('stays partial with its finished steps recorded, and resumes after them once fixed', async () => {
    const failing = `export default {
  async up({ dialect, db, schema, step }) {
    await step('create half', () => (dialect === 'mongo' ? db.createCollection('half') : schema.createTable('half').addColumn('id', 'integer').execute()));
    await step('second step', () => { throw new Error('boom in step 2'); });
  },
  async down() {},
};
`;
    const { dir, s, adapter, booted } = await project(kind, { '20260101000001-a': creates('a'), '20260101000002-half': failing });
    const err = await s.up({}).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'migrations.failed',
      details: { id: '20260101000002-half', step: 'second step', rolledBack: false },
    });
    const half = (await s.status())[0]?.entries[1];
    expect(half).toMatchObject({ state: 'partial', row: { steps: 1, error: expect.stringContaining('boom in step 2') } });
    expect(await tables(adapter)).toContain('half');
    // down refuses to guess what half a migration did.
    await expect(s.down({})).rejects.toMatchObject({ code: 'migrations.partial', status: 409 });

    writeFileSync(join(dir, 'migrations/20260101000002-half.ts'), failing.replace("throw new Error('boom in step 2');", 'return 1;'));
    const lines: string[] = [];
    await s.up({}, { log: (l) => lines.push(l), warn: (l) => lines.push(l) });
    expect(lines).toEqual(expect.arrayContaining([expect.stringContaining('skip  create half (finished in an earlier run)')]));
    expect(await states(s)).toEqual(['a:applied', 'half:applied']);
    void booted;
  });
});

describe('migration files', () => {
  it('a file that throws when imported stops the whole batch before anything runs', async () => {
    const { s, adapter } = await project('sqlite', {
      '20260101000001-a': creates('a'),
      '20260101000002-broken': "throw new Error('broken at import');\nexport default {};\n",
    });
    await expect(s.up({})).rejects.toMatchObject({
      code: 'migrations.load_failed',
      message: expect.stringMatching(/migrations\/20260101000002-broken\.ts failed to load: broken at import/),
    });
    expect(await states(s)).toEqual(['a:pending', 'broken:pending']);
    expect(await tables(adapter)).toEqual(['mega_migrations']);
  });

  it('a file without up/down, and a file not named <timestamp>-<name>, are refused by name', async () => {
    const { dir, s } = await project('sqlite', { '20260101000001-empty': 'export default { up() {} };\n' });
    await expect(s.up({})).rejects.toMatchObject({
      code: 'migrations.invalid_file',
      message: expect.stringContaining('20260101000001-empty.ts'),
    });
    writeFileSync(join(dir, 'migrations/create-users.ts'), creates('x'));
    expect(() => s.targets()).toThrow(expect.objectContaining({ code: 'migrations.invalid_file_name' }));
  });
});

describe.each(KINDS)('drift on %s', (kind) => {
  it('an applied file edited afterwards is reported and refused until restored or resolved', async () => {
    const { dir, s } = await project(kind, { '20260101000001-a': creates('a') });
    await s.up({});
    writeFileSync(join(dir, 'migrations/20260101000001-a.ts'), `${creates('a')}// edited\n`);
    expect(await states(s)).toEqual(['a:drift']);
    await expect(s.up({})).rejects.toMatchObject({ code: 'migrations.drift', status: 409, details: { drift: ['20260101000001-a'] } });
    await expect(s.down({})).rejects.toMatchObject({ code: 'migrations.drift' });
    await s.resolve('a', 'applied');
    expect(await states(s)).toEqual(['a:applied']);
    await s.down({});
    expect(await states(s)).toEqual(['a:pending']);
  });
});

describe('production', () => {
  it('refuses destructive migrations and any down without allowDestructive, and does not apply at boot by default', async () => {
    const drop = `export default { destructive: true, async up({ schema }) { await schema.dropTable('a').execute(); }, async down({ schema }) { await schema.createTable('a').addColumn('id', 'integer').execute(); } };\n`;
    const { s, booted } = await project('sqlite', { '20260101000001-a': creates('a'), '20260101000002-drop': drop }, {}, 'production');
    expect(booted.findLogs(/2 migration\(s\) not applied/)).toHaveLength(1);
    expect(await states(s)).toEqual(['a:pending', 'drop:pending']);
    await expect(s.up({})).rejects.toMatchObject({ code: 'migrations.destructive', details: { migrations: ['20260101000002-drop'] } });
    expect(await states(s)).toEqual(['a:pending', 'drop:pending']);
    await s.up({ to: '20260101000001-a' });
    await s.up({ allowDestructive: true });
    await expect(s.down({})).rejects.toMatchObject({ code: 'migrations.destructive' });
    await s.down({ allowDestructive: true });
    expect(await states(s)).toEqual(['a:applied', 'drop:pending']);
  });
});

describe('the boot check', () => {
  it('applies pending migrations at boot (auto, the default outside production) with one line each', async () => {
    const { s, booted } = await project('sqlite', { '20260101000001-a': creates('a'), '20260101000002-b': creates('b') }, {});
    expect(booted.findLogs(/^migrations: up {4}20260101000001-a \(\d+ ms\)$/)).toHaveLength(1);
    expect(booted.findLogs(/^migrations: up {4}20260101000002-b \(\d+ ms\)$/)).toHaveLength(1);
    expect(booted.findLogs(/^migrations: applied 2 migration\(s\) in \d+ ms$/)).toHaveLength(1);
    expect(await states(s)).toEqual(['a:applied', 'b:applied']);
  });

  it('refuses to boot with pending migrations when requireApplied is set (migrations.pending names them)', async () => {
    const dir = writeProject({ 'app.config.ts': 'export default {};\n', 'migrations/20260101000001-a.ts': creates('a') });
    const db = await freshDb('sqlite', dir);
    reconfigure(dir, db, { auto: false, requireApplied: true });
    const err = await bootProject(dir).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'migrations.pending' });
    expect((err as { details: { pending: string[] } }).details.pending).toEqual([expect.stringMatching(/\/primary\/20260101000001-a$/)]);
    expect((err as Error).message).toContain('20260101000001-a');
  });
});

describe('the boot check, continued', () => {
  it('refuses to boot over a drifted migration, and skips an optional database that is down', async () => {
    const { dir } = await project('sqlite', { '20260101000001-a': creates('a') }, {});
    await stopAll();
    writeFileSync(join(dir, 'migrations/20260101000001-a.ts'), `${creates('a')}// edited\n`);
    await expect(bootProject(dir)).rejects.toMatchObject({ code: 'migrations.drift', details: { drift: ['20260101000001-a'] } });

    const down = writeProject({ 'app.config.ts': 'export default {};\n', 'migrations/20260101000001-a.ts': creates('a') });
    reconfigure(down, {
      kind: 'postgres',
      plugin: '@mega/db-postgres',
      decl: { driver: 'postgres', url: 'postgres://mega:mega@127.0.0.1:9/none', optional: true, connectTimeoutMs: 200 },
      drop: async () => undefined,
    });
    const booted = await bootProject(down);
    expect(booted.findLogs(/db "primary" is unavailable; the migrations of app \S+ were not checked/)).toHaveLength(1);
  });
});

describe('locks', () => {
  it('Postgres: waits for the advisory lock another session holds, then times out (migrations.lock_timeout)', async () => {
    const { s, db } = await project('postgres', { '20260101000001-a': creates('a') }, { auto: false, lockTimeoutMs: 300 });
    const holder = new pg.Client({ connectionString: (db.decl as { url: string }).url });
    await holder.connect();
    try {
      await holder.query("select pg_advisory_lock('7882828770296760690'::bigint)");
      const lines: string[] = [];
      await expect(s.up({}, { log: (l) => lines.push(l), warn: () => undefined })).rejects.toMatchObject({
        code: 'migrations.lock_timeout',
        status: 503,
      });
      expect(lines).toEqual([expect.stringContaining('waiting for the migration lock of db "primary" (postgres)')]);
      await holder.query("select pg_advisory_unlock('7882828770296760690'::bigint)");
      await s.up({});
      expect(await states(s)).toEqual(['a:applied']);
    } finally {
      await holder.end();
    }
  });

  it('MariaDB: GET_LOCK held elsewhere makes migrate wait, then time out', async () => {
    const { s, db } = await project('mariadb', { '20260101000001-a': creates('a') }, { auto: false, lockTimeoutMs: 300 });
    const holder = await mysql.createConnection((db.decl as { url: string }).url);
    try {
      await holder.query("select get_lock(concat('mega_migrations:', database()), 0)");
      await expect(s.up({})).rejects.toMatchObject({ code: 'migrations.lock_timeout' });
      await holder.query("select release_lock(concat('mega_migrations:', database()))");
      await s.up({});
      expect(await states(s)).toEqual(['a:applied']);
    } finally {
      await holder.end();
    }
  });

  it('MongoDB: an expired holder loses the lock to the next one, whose fencing token is higher', async () => {
    const client = new MongoClient(serviceUrl('MONGO_URL'));
    await client.connect();
    const db = client.db(`mega_mig_lock_${Date.now()}`);
    try {
      const options = { timeoutMs: 2000, waiting: () => undefined };
      const a = await mongoLock(db, 'test', 60_000, options);
      await expect(mongoLock(db, 'test', 60_000, { timeoutMs: 200, waiting: () => undefined })).rejects.toMatchObject({
        code: 'migrations.lock_timeout',
      });
      // A's process stalls past its lease: simulate by expiring the document.
      await db.collection<{ _id: string }>('mega_migrations_lock').updateOne({ _id: 'lock' }, { $set: { expiresAt: new Date(0) } });
      const b = await mongoLock(db, 'test', 60_000, options);
      expect(b.token).toBeGreaterThan(a.token);
      await expect(a.assertHeld()).rejects.toMatchObject({ code: 'migrations.lock_lost' });
      await b.assertHeld();
      await a.release();
      await b.release();
      const c = await mongoLock(db, 'test', 60_000, options);
      expect(c.token).toBe(b.token + 1);
      await c.release();
    } finally {
      await db.dropDatabase();
      await client.close();
    }
  });

  it('PGlite: two runs at once in one process apply each migration exactly once', async () => {
    const counted = (n: number) => `export default {
  async up({ db, schema, sql }) {
    await schema.createTable('hits_${n}').addColumn('m', 'integer').execute();
    await sql\`insert into hits_${n} (m) values (${n})\`.execute(db);
  },
  async down({ schema }) { await schema.dropTable('hits_${n}').execute(); },
};
`;
    const { s, adapter } = await project('pglite', { '20260101000001-a': counted(1), '20260101000002-b': counted(2) });
    const [r1, r2] = await Promise.all([s.up({}), s.up({})]);
    const done = [...(r1 ?? []), ...(r2 ?? [])]
      .flatMap((t) => t.runs)
      .filter((p) => p.result === 'done')
      .map((p) => p.id);
    expect(done.sort()).toEqual(['20260101000001-a', '20260101000002-b']);
    const k = (adapter as SqlDb).kysely();
    for (const t of ['hits_1', 'hits_2']) expect(await k.selectFrom(t).selectAll().execute()).toHaveLength(1);
  });
});
