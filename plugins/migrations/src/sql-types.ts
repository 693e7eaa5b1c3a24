/**
 * The portable column types of @mega/models mapped onto each SQL dialect, in one table, so one
 * generated migration file serves Postgres/PGlite, SQLite and MySQL/MariaDB. The mapping is part of
 * what an applied migration did: change it only with a migration that converts existing columns.
 */
import type { SqlDialect } from '@mega/adapters';
import type { FieldDefault, FieldSpec, TableSpec } from '@mega/models';
import type { ColumnDefinitionBuilder, CreateTableBuilder, Expression, Kysely, RawBuilder } from 'kysely';
import { sql } from 'kysely';

/** A column type: usable as a Kysely data type (`addColumn(name, t.text())`) and inside `sql` templates. */
export type SqlType = RawBuilder<unknown>;

export interface SqlTypes {
  readonly dialect: SqlDialect;
  /** Auto-increment integer key: `serial` / `integer ... autoincrement` / `integer ... auto_increment`. */
  id(): SqlType;
  uuid(): SqlType;
  string(length?: number): SqlType;
  text(): SqlType;
  integer(): SqlType;
  bigint(): SqlType;
  float(): SqlType;
  decimal(precision?: number, scale?: number): SqlType;
  boolean(): SqlType;
  date(): SqlType;
  timestamp(): SqlType;
  json(): SqlType;
  /** The type of a FieldSpec (what the generator writes as `t.<type>(...)`). */
  of(field: Pick<FieldSpec, 'type' | 'length' | 'precision' | 'scale'>): SqlType;
  /** Primary key with the dialect's auto-increment (Postgres gets it from `serial`). */
  identity(c: ColumnDefinitionBuilder): ColumnDefinitionBuilder;
  /** `CURRENT_TIMESTAMP` at the precision of `timestamp()`. */
  now(): Expression<unknown>;
  /** A database-generated UUID default (Postgres `gen_random_uuid()`, MariaDB `uuid()`); none on SQLite, where the model layer fills it. */
  defaultUuid(c: ColumnDefinitionBuilder): ColumnDefinitionBuilder;
  /** The default expression of a FieldDefault (undefined when the dialect has none for it). */
  defaultOf(d: FieldDefault): unknown;
}

export function sqlTypes(dialect: SqlDialect): SqlTypes {
  const pg = dialect === 'postgres';
  const my = dialect === 'mysql';
  const raw = (s: string): SqlType => sql.raw(s);
  const uuidDefault = pg ? sql`gen_random_uuid()` : my ? sql`(uuid())` : undefined;
  const t: SqlTypes = {
    dialect,
    id: () => raw(pg ? 'serial' : 'integer'),
    uuid: () => raw(pg ? 'uuid' : my ? 'char(36)' : 'text'),
    string: (length = 255) => raw(`varchar(${Math.trunc(length)})`),
    text: () => raw('text'),
    integer: () => raw('integer'),
    bigint: () => raw('bigint'),
    float: () => raw(pg || my ? 'double precision' : 'real'),
    decimal: (precision = 10, scale = 2) => raw(`decimal(${Math.trunc(precision)}, ${Math.trunc(scale)})`),
    boolean: () => raw('boolean'),
    date: () => raw('date'),
    // MySQL TIMESTAMP stops in 2038 and auto-updates; DATETIME(3) keeps milliseconds like the others.
    // SQLite keeps the declared name: `timestamp`/`boolean`/`date` get NUMERIC affinity, which leaves
    // ISO text as text and epoch numbers as numbers, whatever the model layer stores.
    timestamp: () => raw(pg ? 'timestamptz' : my ? 'datetime(3)' : 'timestamp'),
    json: () => raw(pg ? 'jsonb' : my ? 'json' : 'text'),
    of(f) {
      switch (f.type) {
        case 'string':
          return t.string(f.length);
        case 'decimal':
          return t.decimal(f.precision, f.scale);
        default:
          return t[f.type]();
      }
    },
    identity: (c) => (pg ? c.primaryKey() : c.primaryKey().autoIncrement()),
    now: () => (my ? sql`CURRENT_TIMESTAMP(3)` : sql`CURRENT_TIMESTAMP`),
    defaultUuid: (c) => (uuidDefault ? c.defaultTo(uuidDefault) : c),
    defaultOf(d) {
      if (d.kind === 'now') return t.now();
      if (d.kind === 'uuid') return uuidDefault;
      return d.value;
    },
  };
  return t;
}

/** The column builder chain of a field (not null, default, primary key); foreign keys are named constraints. */
export function columnOf(t: SqlTypes, f: FieldSpec): (c: ColumnDefinitionBuilder) => ColumnDefinitionBuilder {
  return (c) => {
    let b = c;
    if (f.type === 'id' && f.primary) return t.identity(b);
    if (f.primary) b = b.primaryKey();
    if (!f.nullable) b = b.notNull();
    const d = f.default ? t.defaultOf(f.default) : undefined;
    if (d !== undefined) b = b.defaultTo(d as never);
    return b;
  };
}

export const fkName = (table: string, column: string) => `${table}_${column}_fkey`;

/**
 * Creates `spec` (columns, named foreign keys) without its indexes: the same definition the
 * generator writes out as builder calls, used by `rebuildTable` on SQLite.
 */
export async function createTableFromSpec(db: Kysely<unknown>, t: SqlTypes, spec: TableSpec, name = spec.name): Promise<void> {
  // Column names are only known at run time: widen the builder's column-name parameter.
  let b = db.schema.createTable(name) as CreateTableBuilder<string, string>;
  for (const f of spec.fields) b = b.addColumn(f.name, t.of(f), columnOf(t, f));
  for (const f of spec.fields) {
    if (!f.references) continue;
    const r = f.references;
    b = b.addForeignKeyConstraint(fkName(spec.name, f.name), [f.name], r.table, [r.column], (fk) =>
      r.onDelete ? fk.onDelete(r.onDelete) : fk,
    );
  }
  await b.execute();
}
