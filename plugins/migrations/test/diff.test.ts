/** The model diff, rename decisions, destructive marks, names and the code the generator writes. */
import type { FieldSpec, SchemaSnapshot, TableSpec } from '@mega/models';
import { describe, expect, it } from 'vitest';
import { jsonSchemaOf, renderMigration } from '../src/codegen.js';
import {
  describe as describeOp,
  diffSnapshots,
  emptySnapshot,
  invert,
  isDestructive,
  normalizeTable,
  parseRenames,
  topoSort,
} from '../src/diff.js';
import { migrationSlug, timestampFor } from '../src/files.js';
import { statusOf } from '../src/runner.js';

const f = (name: string, type: FieldSpec['type'], extra: Partial<FieldSpec> = {}): FieldSpec => ({ name, type, nullable: false, ...extra });

const table = (name: string, fields: FieldSpec[], indexes: TableSpec['indexes'] = []): TableSpec => ({
  name,
  model: name,
  primaryKey: 'id',
  fields: [f('id', 'id', { primary: true }), ...fields],
  indexes,
  timestamps: false,
});

const snap = (...tables: TableSpec[]): SchemaSnapshot => ({ version: 1, tables: Object.fromEntries(tables.map((t) => [t.name, t])) });

const ops = (prev: SchemaSnapshot, next: SchemaSnapshot, renames: string[] = []) =>
  diffSnapshots(prev, next, parseRenames(renames, prev, next)).changes.flatMap((c) => c.ops.map(describeOp));

const users = table('users', [f('email', 'string', { length: 320, unique: true }), f('name', 'string', { nullable: true })]);
const notes = table(
  'notes',
  [f('user_id', 'integer', { references: { table: 'users', column: 'id', onDelete: 'cascade' } }), f('body', 'text')],
  [{ name: 'notes_user_id_idx', columns: ['user_id'], unique: false }],
);

describe('diffSnapshots', () => {
  it('creates referenced tables first (with their indexes and unique fields as named indexes) and nothing on no change', () => {
    expect(ops(emptySnapshot(), snap(notes, users))).toEqual(['create table users', 'create table notes']);
    expect(normalizeTable(users).indexes).toEqual([{ name: 'users_email_key', columns: ['email'], unique: true }]);
    expect(ops(snap(users, notes), snap(users, notes))).toEqual([]);
    expect(topoSort([notes, users]).map((t) => t.name)).toEqual(['users', 'notes']);
  });

  it('reports a same-typed dropped + added column as a rename candidate and never decides it', () => {
    const next = snap(table('users', [f('email', 'string', { length: 320, unique: true }), f('full_name', 'string', { nullable: true })]));
    const d = diffSnapshots(snap(users), next);
    expect(d.candidates).toEqual([{ kind: 'column', table: 'users', from: 'name', to: 'full_name' }]);
    expect(d.changes[0]?.ops.map(describeOp)).toEqual(['add column users.full_name (string)', 'drop column users.name']);
    expect(ops(snap(users), next, ['users.name:full_name'])).toEqual(['rename column users.name to full_name']);
    expect(diffSnapshots(snap(users), next, parseRenames(['users.name:users.full_name'], snap(users), next)).candidates).toEqual([]);
  });

  it('does not offer columns of different types as renames', () => {
    const next = snap(table('users', [f('email', 'string', { length: 320, unique: true }), f('age', 'integer', { nullable: true })]));
    expect(diffSnapshots(snap(users), next).candidates).toEqual([]);
  });

  it('offers a dropped + created table with the same columns as a table rename; renames its indexes and keeps the key', () => {
    const posts = { ...notes, name: 'posts', indexes: [{ name: 'posts_user_id_idx', columns: ['user_id'], unique: false }] };
    const d = diffSnapshots(snap(users, notes), snap(users, posts));
    expect(d.candidates).toEqual([{ kind: 'table', from: 'notes', to: 'posts' }]);
    expect(ops(snap(users, notes), snap(users, posts), ['notes:posts'])).toEqual([
      'rename table notes to posts',
      'drop index notes_user_id_idx',
      'create index posts_user_id_idx on posts (user_id)',
    ]);
  });

  it('changes type, nullability and default in place, and foreign keys around column changes', () => {
    const next = snap(
      users,
      table(
        'notes',
        [f('user_id', 'bigint', { nullable: true, references: { table: 'users', column: 'id', onDelete: 'set null' } }), f('body', 'text')],
        notes.indexes,
      ),
    );
    expect(ops(snap(users, notes), next)).toEqual([
      'drop foreign key notes.user_id',
      'alter column notes.user_id: type integer -> bigint, nullable',
      'add foreign key notes.user_id -> users.id',
    ]);
  });

  it('marks drops and narrowing type changes destructive, widening ones not', () => {
    const alter = (from: FieldSpec, to: FieldSpec) => isDestructive({ kind: 'alterColumn', table: 't', from, to });
    expect(alter(f('a', 'integer'), f('a', 'bigint'))).toBe(false);
    expect(alter(f('a', 'string', { length: 20 }), f('a', 'string', { length: 40 }))).toBe(false);
    expect(alter(f('a', 'string', { length: 40 }), f('a', 'string', { length: 20 }))).toBe(true);
    expect(alter(f('a', 'text'), f('a', 'integer'))).toBe(true);
    expect(alter(f('a', 'string'), f('a', 'string', { nullable: true }))).toBe(false);
    expect(isDestructive({ kind: 'dropColumn', table: 't', field: f('a', 'text') })).toBe(true);
    expect(isDestructive({ kind: 'dropTable', table: users })).toBe(true);
  });

  it('inverts to the diff the other way round', () => {
    const next = snap(
      table('users', [f('email', 'string', { length: 320, unique: true }), f('age', 'integer', { nullable: true })]),
      notes,
    );
    const forward = diffSnapshots(snap(users, notes), next).changes;
    const back = diffSnapshots(next, snap(users, notes)).changes;
    const sorted = (cs: typeof forward) => cs.flatMap((c) => c.ops.map(describeOp)).sort();
    expect(sorted(invert(forward))).toEqual(sorted(back));
  });

  it('refuses renames that do not apply', () => {
    const next = snap(table('users', [f('full_name', 'string')]));
    for (const bad of ['users.nope:full_name', 'users.name:nope', 'users:people', 'nope', 'a.b:c.d.e']) {
      expect(() => parseRenames([bad], snap(users), next), bad).toThrow(
        expect.objectContaining({ code: 'migrations.invalid_rename', status: 400 }),
      );
    }
  });
});

describe('names', () => {
  it('turns names into kebab-case slugs and refuses unusable ones', () => {
    expect(['AddAuthToUsers', 'add_auth_to_users', 'add auth to users', 'add-auth-to-users'].map(migrationSlug)).toEqual(
      Array(4).fill('add-auth-to-users'),
    );
    for (const bad of ['', '  ', '1st', '../x', 'a/b', 'a.b', 'x;drop', 'é', 'a'.repeat(81)]) {
      expect(() => migrationSlug(bad), bad).toThrow(expect.objectContaining({ code: 'migrations.invalid_name', status: 400 }));
    }
  });

  it('timestamps in UTC, strictly after the newest migration', () => {
    const d = new Date(Date.UTC(2026, 0, 2, 3, 4, 5));
    expect(timestampFor(d)).toBe('20260102030405');
    expect(timestampFor(d, '20260102030405')).toBe('20260102030406');
    expect(timestampFor(d, '20261231235959')).toBe('20270101000000');
  });
});

describe('status', () => {
  it('tells applied, pending, drift, partial and missing apart', () => {
    const row = (name: string, checksum: string, status: 'applied' | 'partial' = 'applied') => ({
      app: 'a',
      name,
      checksum,
      batch: 1,
      status,
      steps: 0,
      durationMs: 1,
      appliedAt: new Date(),
      error: null,
    });
    const files = ['1-a', '2-b', '3-c', '4-d'].map((id) => ({ id, file: id, checksum: `sum-${id}` }));
    const rows = [row('1-a', 'sum-1-a'), row('2-b', 'edited'), row('3-c', 'sum-3-c', 'partial'), row('0-gone', 'x')];
    expect(statusOf(files, rows).map((e) => `${e.id}:${e.state}`)).toEqual([
      '0-gone:missing',
      '1-a:applied',
      '2-b:drift',
      '3-c:partial',
      '4-d:pending',
    ]);
  });
});

describe('the generated file', () => {
  const render = (prev: SchemaSnapshot, next: SchemaSnapshot, renames: string[] = [], kind: 'sql' | 'mongo' = 'sql') =>
    renderMigration({
      id: '20260101000000-x',
      app: 'main',
      alias: 'primary',
      kind,
      command: 'mega migrate generate x',
      generatedAt: new Date(0),
      changes: diffSnapshots(prev, next, parseRenames(renames, prev, next)).changes,
    });

  it('writes one file for every SQL dialect, with a SQLite rebuild where it cannot alter', () => {
    const next = snap(
      users,
      table(
        'notes',
        [f('user_id', 'bigint', { references: { table: 'users', column: 'id', onDelete: 'cascade' } }), f('body', 'text')],
        notes.indexes,
      ),
    );
    const src = render(snap(users, notes), next);
    expect(src).toContain("if (dialect === 'sqlite') {");
    expect(src).toContain('rebuildTable(');
    expect(src).toContain("modifyColumn('user_id', t.bigint(), (c) => c.notNull())");
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the generated code holds template literals
    expect(src).toContain("using ${sql.ref('user_id')}::${t.bigint()}");
    // Inside the non-SQLite branch, the MySQL/Postgres choices are made without re-testing for SQLite.
    expect(src).toContain(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the generated code holds template literals
      "dialect === 'mysql'\n          ? sql`alter table ${sql.table('notes')} drop foreign key ${sql.ref('notes_user_id_fkey')}`.execute(db)",
    );
    expect(src).toMatch(/satisfies SqlMigration;\n$/);
  });

  it('indexes only a prefix of text columns on MySQL, and marks destructive steps', () => {
    const next = snap(
      table(
        'users',
        [f('email', 'string', { length: 320, unique: true }), f('bio', 'text')],
        [{ name: 'users_bio_idx', columns: ['bio'], unique: false }],
      ),
    );
    const src = render(snap(users), next);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the generated code holds template literals
    expect(src).toContain("(${sql.ref('bio')}(255))");
    expect(src).toContain('destructive: true,');
    expect(src).toContain('// DESTRUCTIVE (needs --allow-destructive in production): drop column users.name');
  });

  it('writes MongoDB collections, indexes and validators (the primary key is _id)', () => {
    const src = render(emptySnapshot(), snap(users), [], 'mongo');
    expect(src).toContain("createCollection('users', {");
    expect(src).toContain("db.collection('users').createIndex({ email: 1 }, { name: 'users_email_key', unique: true })");
    expect(jsonSchemaOf(users)).toEqual({
      bsonType: 'object',
      required: ['email'],
      properties: { email: { bsonType: 'string', maxLength: 320 }, name: { bsonType: ['string', 'null'], maxLength: 255 } },
    });
  });

  it('refuses primary key changes (written by hand)', () => {
    const next = snap({ ...users, fields: users.fields.map((x) => (x.name === 'id' ? { ...x, type: 'uuid' as const } : x)) });
    expect(() => render(snap(users), next)).toThrow(expect.objectContaining({ code: 'migrations.unsupported_change' }));
  });
});
