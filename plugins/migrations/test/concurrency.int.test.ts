/**
 * Two real `mega migrate up` processes started at once on the same database: every migration runs
 * exactly once (its non-idempotent insert leaves one row), whichever process applies it, on each
 * server (PGlite is one process per data directory, so its case runs in process: runner.int.test.ts).
 */
import type { AdapterRegistry, SqlDb } from '@mega/adapters';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import type { Db } from 'mongodb';
import { afterEach, describe, expect, it } from 'vitest';
import { killAll, runMega } from '../../../scripts/test/procs.js';
import type { MigrationsService } from '../src/service.js';
import type { TestDb } from './support.js';
import { freshDb, reconfigure } from './support.js';

let db: TestDb | undefined;

afterEach(async () => {
  killAll();
  await stopAll();
  await db?.drop();
  db = undefined;
});

/** Creates a table and inserts one row (a second run would add a second row or fail), then lingers so the runs overlap. */
const counted = (n: number) => `export default {
  async up({ dialect, db, schema, sql }) {
    if (dialect === 'mongo') await db.collection('hits').insertOne({ m: ${n} });
    else {
      await schema.createTable('hits_${n}').addColumn('m', 'integer').execute();
      await sql\`insert into hits_${n} (m) values (${n})\`.execute(db);
    }
    await new Promise((r) => setTimeout(r, 150));
  },
  async down({ dialect, db, schema }) {
    if (dialect === 'mongo') await db.collection('hits').deleteMany({ m: ${n} });
    else await schema.dropTable('hits_${n}').execute();
  },
};
`;

describe.each(['postgres', 'sqlite', 'mariadb', 'mongo'] as const)('two processes migrating %s at once', (kind) => {
  it('apply each migration exactly once', async () => {
    const files: Record<string, string> = { 'app.config.ts': 'export default {};\n' };
    for (let i = 1; i <= 4; i++) files[`migrations/2026010100000${i}-m${i}.ts`] = counted(i);
    const dir = writeProject(files);
    db = await freshDb(kind, dir);
    reconfigure(dir, db, { auto: false });

    const a = runMega(['migrate', 'up'], dir);
    const b = runMega(['migrate', 'up'], dir);
    const [ea, eb] = await Promise.all([a.exited, b.exited]);
    expect([ea.code, eb.code], `${a.out()}\n---\n${b.out()}`).toEqual([0, 0]);

    // Each migration has exactly one "up" line across both outputs; the other process waited or skipped it.
    const out = `${a.out()}\n${b.out()}`;
    for (let i = 1; i <= 4; i++)
      expect(out.match(new RegExp(`\\n {2}up {4}2026010100000${i}-m${i} \\(\\d+ ms\\)`, 'g')), out).toHaveLength(1);

    const booted = await bootProject(dir);
    const s = booted.kernel.use<MigrationsService>('migrations');
    expect((await s.status())[0]?.entries.map((e) => e.state)).toEqual(['applied', 'applied', 'applied', 'applied']);
    const adapter = booted.kernel.use<AdapterRegistry<SqlDb | { driver: 'mongodb'; db: Db }>>('adapters:dbs').get('primary');
    if ('kysely' in adapter) {
      for (let i = 1; i <= 4; i++) expect(await adapter.kysely().selectFrom(`hits_${i}`).selectAll().execute()).toEqual([{ m: i }]);
    } else {
      const hits = await adapter.db
        .collection('hits')
        .find({}, { projection: { _id: 0 } })
        .sort({ m: 1 })
        .toArray();
      expect(hits).toEqual([{ m: 1 }, { m: 2 }, { m: 3 }, { m: 4 }]);
    }
  });
});
