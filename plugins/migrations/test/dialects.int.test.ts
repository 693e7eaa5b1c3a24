/**
 * Every dialect on its real server (PGlite embedded, PostgreSQL, SQLite, MariaDB, FerretDB for
 * MongoDB): generate -> up -> down -> up, then a second model version (renames, widened and
 * lengthened columns, a dropped column, a renamed table, a new table with a foreign key) ->
 * up -> down -> up. After each step the database is introspected and compared with the models
 * (or, after a down, with the previous version's journal snapshot); rows written before a rename
 * are still there after it.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AdapterRegistry, SqlDb } from '@mega/adapters';
import type { SchemaSnapshot } from '@mega/models';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import type { Db } from 'mongodb';
import { afterEach, describe, expect, it } from 'vitest';
import { compareSchema, introspectMongo, introspectSql } from '../src/introspect.js';
import type { MigrationsService } from '../src/service.js';
import type { Kind, TestDb } from './support.js';
import { freshDb, gen, KINDS, MODELS_V1, MODELS_V2, reconfigure, V2_RENAMES } from './support.js';

let db: TestDb | undefined;

afterEach(async () => {
  await stopAll();
  await db?.drop();
  db = undefined;
});

type Adapter = SqlDb | { driver: 'mongodb'; db: Db };

async function schemaProblems(adapter: Adapter, expected: SchemaSnapshot, kind: Kind): Promise<string[]> {
  if ('kysely' in adapter) return compareSchema(expected, await introspectSql(adapter.kysely(), adapter.dialect), adapter.dialect);
  void kind;
  return compareSchema(expected, await introspectMongo(adapter.db), 'mongo');
}

/** Rows through the adapter's own client: a user named Ada with one note. */
async function seed(adapter: Adapter, table: string): Promise<void> {
  const user = { email: 'ada@example.com', name: 'Ada', bio: 'math', token: randomUUID() };
  if (!('kysely' in adapter)) {
    await adapter.db
      .collection('users')
      .insertOne({ ...user, role: 'member', score: 0, active: true, created_at: new Date(), updated_at: new Date() });
    await adapter.db.collection(table).insertOne({ user_id: 1, body: 'first note' });
    return;
  }
  const k = adapter.kysely();
  await k.insertInto('users').values(user).execute();
  const { id } = await k.selectFrom('users').select('id').where('email', '=', user.email).executeTakeFirstOrThrow();
  await k.insertInto(table).values({ user_id: id, body: 'first note' }).execute();
}

async function readBack(adapter: Adapter, nameColumn: string, notes: string): Promise<{ name: unknown; body: unknown }> {
  if (!('kysely' in adapter)) {
    const u = await adapter.db.collection('users').findOne({ email: 'ada@example.com' });
    const n = await adapter.db.collection(notes).findOne({});
    return { name: u?.[nameColumn], body: n?.body };
  }
  const k = adapter.kysely();
  const u = await k.selectFrom('users').select(nameColumn).where('email', '=', 'ada@example.com').executeTakeFirst();
  const n = await k.selectFrom(notes).select('body').executeTakeFirst();
  return { name: u?.[nameColumn], body: n?.body };
}

describe.each(KINDS)('migrations on %s', (kind) => {
  it('generate -> up -> down -> up, twice, and the schema matches the models each time', async () => {
    const dir = writeProject({ 'app.config.ts': 'export default {};\n', 'models/v1.ts': MODELS_V1 });
    db = await freshDb(kind, dir);
    reconfigure(dir, db, { auto: false });

    const first = await gen(dir, 'create-users');
    const file1 = first.result[0]?.file as string;
    expect(file1).toMatch(/migrations\/\d{14}-create-users\.ts$/);
    const v1 = (JSON.parse(readFileSync(join(dir, '.mega/journal/snapshot.json'), 'utf8')) as { snapshot: SchemaSnapshot }).snapshot;

    const booted = await bootProject(dir);
    const s = booted.kernel.use<MigrationsService>('migrations');
    const adapter = booted.kernel.use<AdapterRegistry<Adapter>>('adapters:dbs').get('primary');
    const dialect = kind === 'mongo' ? 'mongo' : kind === 'mariadb' ? 'mysql' : kind === 'sqlite' ? 'sqlite' : 'postgres';
    expect(s.targets()[0]?.backend.dialect).toBe(dialect);

    const up1 = await s.up({});
    expect(up1[0]?.runs).toEqual([
      expect.objectContaining({ id: first.result[0]?.file?.match(/(\d{14}-create-users)/)?.[1], direction: 'up', result: 'done' }),
    ]);
    expect(await s.verify()).toEqual([{ app: expect.any(String), alias: 'primary', problems: [] }]);

    await s.down({ steps: 1 });
    expect((await s.verify())[0]?.problems.sort()).toEqual(['table notes is missing', 'table users is missing']);
    await s.up({});
    expect((await s.verify())[0]?.problems).toEqual([]);
    await seed(adapter, 'notes');

    // Version 2: renames need saying so; with them, nothing is dropped that was renamed.
    rmSync(join(dir, 'models/v1.ts'));
    writeFileSync(join(dir, 'models/v2.ts'), MODELS_V2);
    await expect(gen(dir, 'v2')).rejects.toMatchObject({ code: 'migrations.rename_ambiguous' });
    const second = await gen(dir, 'rename-and-widen', { renames: V2_RENAMES });
    expect(second.result[0]).toMatchObject({ destructive: true });
    expect(second.result[0]?.ops).toEqual(
      expect.arrayContaining([
        'rename table notes to posts',
        'rename column users.name to full_name',
        '[destructive] drop column users.meta',
      ]),
    );

    await s.up({});
    expect((await s.verify())[0]?.problems).toEqual([]);
    expect(await readBack(adapter, 'full_name', 'posts')).toEqual({ name: 'Ada', body: 'first note' });

    await s.down({ steps: 1 });
    expect(await schemaProblems(adapter, v1, kind)).toEqual([]);
    expect(await readBack(adapter, 'name', 'notes')).toEqual({ name: 'Ada', body: 'first note' });

    await s.up({});
    expect((await s.verify())[0]?.problems).toEqual([]);
    const status = await s.status();
    expect(status[0]?.entries.map((e) => e.state)).toEqual(['applied', 'applied']);

    // The check is live: an index dropped behind the migrations' back is reported.
    if ('kysely' in adapter)
      await adapter
        .kysely()
        .schema.dropIndex('users_full_name_role_idx')
        .$call((b) => (kind === 'mariadb' ? b.on('users') : b))
        .execute();
    else await adapter.db.collection('users').dropIndex('users_full_name_role_idx');
    expect((await s.verify())[0]?.problems).toEqual(['index users_full_name_role_idx on users is missing']);
  });
});
