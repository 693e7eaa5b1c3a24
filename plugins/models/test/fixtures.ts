/**
 * Test support: tables (SQL) and indexes (Mongo) for a snapshot, made directly from the TableSpecs so
 * these tests do not depend on @mega/migrations; the backends every CRUD suite runs on.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { SqlDb } from '@mega/adapters';
import type { AnyPlugin, Kernel } from '@mega/kernel';
import { bootPlugins } from '@mega/testing';
import { type Kysely, sql } from 'kysely';
import type { MongoLike, SchemaSnapshot, TableSpec } from '../src/index.js';

const TYPES: Record<SqlDb['dialect'], Record<string, string>> = {
  postgres: {
    uuid: 'uuid',
    text: 'text',
    integer: 'integer',
    bigint: 'bigint',
    float: 'double precision',
    boolean: 'boolean',
    date: 'date',
    timestamp: 'timestamptz',
    json: 'jsonb',
  },
  sqlite: {
    uuid: 'text',
    text: 'text',
    integer: 'integer',
    bigint: 'integer',
    float: 'real',
    boolean: 'boolean',
    date: 'date',
    timestamp: 'timestamp',
    json: 'text',
  },
  mysql: {
    uuid: 'char(36)',
    text: 'text',
    integer: 'integer',
    bigint: 'bigint',
    float: 'double',
    boolean: 'boolean',
    date: 'date',
    timestamp: 'datetime(3)',
    json: 'json',
  },
};

function columnType(dialect: SqlDb['dialect'], f: TableSpec['fields'][number]): string {
  if (f.type === 'id') return dialect === 'postgres' ? 'serial' : 'integer';
  if (f.type === 'string') return `varchar(${f.length ?? 255})`;
  if (f.type === 'decimal') return `decimal(${f.precision ?? 10}, ${f.scale ?? 2})`;
  return TYPES[dialect][f.type] as string;
}

/** Drops (in reverse dependency order) and creates the snapshot's tables with their indexes. */
export async function createTables(db: SqlDb, snapshot: SchemaSnapshot): Promise<void> {
  const k = db.kysely() as Kysely<any>;
  const specs = orderByDependencies(Object.values(snapshot.tables));
  for (const spec of [...specs].reverse()) await k.schema.dropTable(spec.name).ifExists().execute();
  for (const spec of specs) {
    let t = k.schema.createTable(spec.name);
    for (const f of spec.fields) {
      t = t.addColumn(f.name, sql.raw(columnType(db.dialect, f)), (c) => {
        let b = c;
        if (f.primary) b = b.primaryKey();
        if (f.type === 'id' && db.dialect !== 'postgres') b = b.autoIncrement();
        if (!f.nullable) b = b.notNull();
        if (f.unique) b = b.unique();
        if (f.references) {
          const r = f.references;
          b = b.references(`${r.table}.${r.column}`);
          if (r.onDelete) b = b.onDelete(r.onDelete);
        }
        return b;
      });
    }
    await t.execute();
    for (const i of spec.indexes) {
      let b = k.schema.createIndex(i.name).on(spec.name).columns(i.columns);
      if (i.unique) b = b.unique();
      await b.execute();
    }
  }
}

export async function dropTables(db: SqlDb, snapshot: SchemaSnapshot): Promise<void> {
  const k = db.kysely() as Kysely<any>;
  for (const spec of orderByDependencies(Object.values(snapshot.tables)).reverse())
    await k.schema.dropTable(spec.name).ifExists().execute();
}

function orderByDependencies(specs: TableSpec[]): TableSpec[] {
  const out: TableSpec[] = [];
  const visit = (s: TableSpec) => {
    if (out.includes(s)) return;
    for (const f of s.fields) {
      const target = f.references && specs.find((x) => x.name === f.references?.table && x !== s);
      if (target) visit(target);
    }
    out.push(s);
  };
  for (const s of specs) visit(s);
  return out;
}

/** Empties the snapshot's collections (and their id counters) and creates their unique indexes. */
export async function createCollections(db: MongoLike, snapshot: SchemaSnapshot): Promise<void> {
  for (const spec of Object.values(snapshot.tables)) {
    await db
      .collection(spec.name)
      .drop()
      .catch(() => undefined);
    await db.collection('mega_counters').deleteOne({ _id: spec.name as never });
    for (const f of spec.fields) if (f.unique && !f.primary) await db.collection(spec.name).createIndex({ [f.name]: 1 }, { unique: true });
    for (const i of spec.indexes) {
      await db.collection(spec.name).createIndex(Object.fromEntries(i.columns.map((c) => [c, 1])), { unique: i.unique, name: i.name });
    }
  }
}

/** MARIADB_URL from the environment or `scripts/services.sh env`. */
export function mariadbUrl(): string | undefined {
  if (process.env.MARIADB_URL) return process.env.MARIADB_URL;
  const script = join(import.meta.dirname, '..', '..', '..', 'scripts', 'services.sh');
  const out = execFileSync('bash', [script, 'env'], { encoding: 'utf8' });
  return /^MARIADB_URL=(.*)$/m.exec(out)?.[1];
}

/** Boots `plugin` with one db alias `primary` and returns the kernel and its adapter. */
export async function bootDb<T>(plugin: AnyPlugin, declaration: Record<string, unknown>): Promise<{ kernel: Kernel; db: T }> {
  const { kernel } = await bootPlugins({ plugins: [plugin], services: { dbs: { primary: declaration as { driver: string } } } });
  return { kernel, db: (kernel.apps[0] as unknown as { db(): T }).db() };
}
