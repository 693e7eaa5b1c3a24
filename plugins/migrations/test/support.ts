/**
 * Shared by the migrations suites: a fresh database per test on each real service (a new Postgres
 * database, MariaDB database, Mongo database, SQLite file or PGlite directory), a project using it,
 * and the two model versions the round trips migrate between.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeProject } from '@mega/testing';
import { MongoClient } from 'mongodb';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { serviceEnv } from '../../../scripts/test/service-env.js';
import { generate } from '../src/generate.js';

export type Kind = 'pglite' | 'postgres' | 'sqlite' | 'mariadb' | 'mongo';
export const KINDS: readonly Kind[] = ['pglite', 'postgres', 'sqlite', 'mariadb', 'mongo'];

/** A service URL (from the environment, else `scripts/services.sh env`); missing is a failure, never a skip. */
export function serviceUrl(key: 'DATABASE_URL' | 'MARIADB_URL' | 'MONGO_URL'): string {
  return serviceEnv()[key];
}

export interface TestDb {
  kind: Kind;
  plugin: string;
  /** `services.dbs.primary`; undefined: the embedded PGlite default. */
  decl: Record<string, unknown> | undefined;
  /** Removes the database (afterEach). */
  drop(): Promise<void>;
}

const PLUGIN: Record<Kind, string> = {
  pglite: '@mega/db-postgres',
  postgres: '@mega/db-postgres',
  sqlite: '@mega/db-sqlite',
  mariadb: '@mega/db-mariadb',
  mongo: '@mega/db-mongo',
};

const withPath = (url: string, db: string) => {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
};

/** A database nobody else uses; `dir` is the project (SQLite file, PGlite directory). */
export async function freshDb(kind: Kind, dir: string): Promise<TestDb> {
  const name = `mega_mig_${randomBytes(4).toString('hex')}`;
  const plugin = PLUGIN[kind];
  switch (kind) {
    case 'pglite':
      return { kind, plugin, decl: undefined, drop: async () => undefined };
    case 'sqlite':
      mkdirSync(join(dir, 'data'), { recursive: true });
      return { kind, plugin, decl: { driver: 'sqlite', url: `sqlite:${join(dir, 'data', 'app.db')}` }, drop: async () => undefined };
    case 'postgres': {
      const url = serviceUrl('DATABASE_URL');
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(`create database ${name}`);
      await admin.end();
      return {
        kind,
        plugin,
        decl: { driver: 'postgres', url: withPath(url, name) },
        drop: async () => {
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          await c.query(`drop database if exists ${name} with (force)`);
          await c.end();
        },
      };
    }
    case 'mariadb': {
      const url = serviceUrl('MARIADB_URL');
      const admin = await mysql.createConnection(url);
      await admin.query(`create database ${name}`);
      await admin.end();
      return {
        kind,
        plugin,
        decl: { driver: 'mariadb', url: withPath(url, name) },
        drop: async () => {
          const c = await mysql.createConnection(url);
          await c.query(`drop database if exists ${name}`);
          await c.end();
        },
      };
    }
    case 'mongo': {
      const url = serviceUrl('MONGO_URL');
      return {
        kind,
        plugin,
        decl: { driver: 'mongodb', url: withPath(url, name) },
        drop: async () => {
          const c = new MongoClient(url);
          await c.connect();
          await c.db(name).dropDatabase();
          await c.close();
        },
      };
    }
  }
}

/** A single-app project on `db` with `files` (models, migrations), `migrations` config merged in. */
export function migrationsProject(db: TestDb, files: Record<string, string>, migrations: Record<string, unknown> = {}): string {
  const dir = writeProject({ 'app.config.ts': 'export default {};\n', ...files });
  return reconfigure(dir, db, migrations);
}

/** (Re)writes mega.config.ts of `dir` for `db`. */
export function reconfigure(dir: string, db: TestDb, migrations: Record<string, unknown> = {}): string {
  const config = {
    plugins: [db.plugin, '@mega/models', '@mega/migrations'],
    ...(db.decl ? { services: { dbs: { primary: db.decl } } } : {}),
    migrations,
  };
  writeFileSync(join(dir, 'mega.config.ts'), `export default ${JSON.stringify(config, null, 2)};\n`);
  return dir;
}

/**
 * The first model version: every field type the round trips check (unique, composite and text
 * indexes, a uuid default, a `now` default, timestamps, a foreign key with cascade).
 */
export const MODELS_V1 = `import { belongsTo, defineModel, field, hasMany } from '@mega/models';

export const User = defineModel({
  name: 'User',
  fields: {
    id: field.id(),
    email: field.string({ length: 320 }).unique(),
    name: field.string().nullable(),
    role: field.string({ length: 20 }).default('member'),
    score: field.integer().default(0),
    token: field.uuid().defaultUuid(),
    seenAt: field.timestamp().defaultNow().nullable(),
    bio: field.text().index(),
    meta: field.json<{ tags: string[] }>().nullable(),
    price: field.decimal({ precision: 8, scale: 2 }).nullable(),
    active: field.boolean().default(true),
    born: field.date().nullable(),
    ratio: field.float().nullable(),
  },
  indexes: [{ columns: ['name', 'role'] }],
  relations: { notes: hasMany('Note', { foreignKey: 'user_id' }) },
  timestamps: true,
});

export const Note = defineModel({
  name: 'Note',
  table: 'notes',
  fields: { id: field.id(), user_id: field.integer().index(), body: field.text() },
  relations: { user: belongsTo('User', { foreignKey: 'user_id', onDelete: 'cascade' }) },
});
`;

/**
 * The second version: users.name renamed to full_name, a column added, one widened (score
 * integer -> bigint), one lengthened, one dropped, a new composite index, notes renamed to posts,
 * and a new table with a nullable foreign key (set null) to it.
 */
export const MODELS_V2 = `import { belongsTo, defineModel, field, hasMany } from '@mega/models';

export const User = defineModel({
  name: 'User',
  fields: {
    id: field.id(),
    email: field.string({ length: 320 }).unique(),
    full_name: field.string().nullable(),
    age: field.integer().nullable(),
    role: field.string({ length: 40 }).default('member'),
    score: field.bigint().default(0),
    token: field.uuid().defaultUuid(),
    seenAt: field.timestamp().defaultNow().nullable(),
    bio: field.text().index(),
    price: field.decimal({ precision: 8, scale: 2 }).nullable(),
    active: field.boolean().default(true),
    born: field.date().nullable(),
    ratio: field.float().nullable(),
  },
  indexes: [{ columns: ['full_name', 'role'] }],
  relations: { posts: hasMany('Post', { foreignKey: 'user_id' }) },
  timestamps: true,
});

export const Post = defineModel({
  name: 'Post',
  table: 'posts',
  fields: { id: field.id(), user_id: field.integer().index(), body: field.text() },
  relations: { user: belongsTo('User', { foreignKey: 'user_id', onDelete: 'cascade' }) },
});

export const Tag = defineModel({
  name: 'Tag',
  table: 'tags',
  fields: { id: field.id(), post_id: field.integer().nullable(), label: field.string({ length: 50 }).unique() },
  relations: { post: belongsTo('Post', { foreignKey: 'post_id', onDelete: 'set null' }) },
});
`;

/** The renames from V1 to V2. */
export const V2_RENAMES = ['users.name:full_name', 'notes:posts'];

/** `generate` without a TTY, its lines collected. */
export async function gen(dir: string, name: string, extra: Partial<Parameters<typeof generate>[1]> = {}) {
  const lines: string[] = [];
  const result = await generate(dir, {
    name,
    renames: [],
    allowDestructive: false,
    empty: false,
    baseline: false,
    dryRun: false,
    say: (l) => lines.push(l),
    command: `mega migrate generate ${name}`,
    ...extra,
  });
  return { result, lines };
}

/** A migration file's text. */
export const read = (file: string) => readFileSync(file, 'utf8');
