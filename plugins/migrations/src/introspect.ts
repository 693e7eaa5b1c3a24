/**
 * Reads the schema a database actually has (information_schema / pg catalogs, SQLite pragmas,
 * MongoDB listCollections/listIndexes) and compares it with the models' snapshot. `mega migrate
 * status --verify` prints the differences; the tests use it to check every dialect's round trip.
 */
import type { SqlDialect } from '@mega/adapters';
import type { FieldSpec, FieldType, SchemaSnapshot } from '@mega/models';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { Db } from 'mongodb';
import { jsonSchemaOf } from './codegen.js';
import { normalizeSnapshot } from './diff.js';
import { MONGO_LOCK_COLLECTION } from './lock.js';

export interface DbColumn {
  name: string;
  /** The database's own type name, lower case, without parameters (`varchar`, `int4`, `datetime`). */
  type: string;
  length: number | undefined;
  nullable: boolean;
  hasDefault: boolean;
}

export interface DbIndex {
  name: string;
  columns: string[];
  unique: boolean;
}

export interface DbForeignKey {
  column: string;
  table: string;
  refColumn: string;
  /** `cascade`, `set null`, `restrict`, `no action` */
  onDelete: string;
}

export interface DbTable {
  name: string;
  columns: DbColumn[];
  indexes: DbIndex[];
  fks: DbForeignKey[];
  /** MongoDB: the collection's `$jsonSchema`, when it has one. */
  validator?: Record<string, unknown> | undefined;
}

// biome-ignore lint/suspicious/noExplicitAny: introspection reads catalogs, not model tables.
type Conn = Kysely<any>;

const str = (v: unknown) => String(v ?? '');
const num = (v: unknown) => (v === null || v === undefined ? undefined : Number(v));

/** The base tables of the connection's schema: `current_schema()` on Postgres, `database()` on MariaDB. */
async function baseTables(db: Conn, schema: 'current_schema()' | 'database()'): Promise<string[]> {
  const tables = await sql<{
    name: string;
  }>`select table_name as name from information_schema.tables where table_schema = ${sql.raw(schema)} and table_type = 'BASE TABLE' order by 1`.execute(
    db,
  );
  return tables.rows.map((t) => t.name);
}

async function pgTables(db: Conn): Promise<DbTable[]> {
  const out: DbTable[] = [];
  for (const name of await baseTables(db, 'current_schema()')) {
    const cols = await sql<
      Record<string, unknown>
    >`select column_name, udt_name, character_maximum_length, is_nullable, column_default from information_schema.columns where table_schema = current_schema() and table_name = ${name} order by ordinal_position`.execute(
      db,
    );
    const idx = await sql<{ name: string; unique: boolean; cols: string[] | string }>`
      select i.relname as name, ix.indisunique as unique, array_agg(a.attname::text order by k.ord) as cols
      from pg_index ix
      join pg_class i on i.oid = ix.indexrelid
      join pg_class t on t.oid = ix.indrelid
      join unnest(ix.indkey) with ordinality as k(attnum, ord) on true
      join pg_attribute a on a.attrelid = t.oid and a.attnum = k.attnum
      where t.relname = ${name} and t.relnamespace = current_schema()::regnamespace and not ix.indisprimary
      group by i.relname, ix.indisunique`.execute(db);
    const fks = await sql<Record<string, unknown>>`
      select a.attname as col, cf.relname as ref_table, af.attname as ref_col, c.confdeltype as del
      from pg_constraint c
      join pg_class t on t.oid = c.conrelid
      join pg_class cf on cf.oid = c.confrelid
      join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
      join pg_attribute af on af.attrelid = c.confrelid and af.attnum = c.confkey[1]
      where c.contype = 'f' and t.relname = ${name} and t.relnamespace = current_schema()::regnamespace`.execute(db);
    const rule: Record<string, string> = { c: 'cascade', n: 'set null', r: 'restrict', a: 'no action', d: 'set default' };
    out.push({
      name,
      columns: cols.rows.map((c) => ({
        name: str(c.column_name),
        type: str(c.udt_name).toLowerCase(),
        length: num(c.character_maximum_length),
        nullable: c.is_nullable === 'YES',
        hasDefault: c.column_default !== null,
      })),
      indexes: idx.rows.map((i) => ({
        name: i.name,
        unique: i.unique,
        // pg returns text[] as an array; PGlite may hand back its literal `{a,b}`.
        columns: Array.isArray(i.cols)
          ? i.cols
          : str(i.cols)
              .replace(/^\{|\}$/g, '')
              .split(','),
      })),
      fks: fks.rows.map((f) => ({
        column: str(f.col),
        table: str(f.ref_table),
        refColumn: str(f.ref_col),
        onDelete: rule[str(f.del)] ?? str(f.del),
      })),
    });
  }
  return out;
}

async function mysqlTables(db: Conn): Promise<DbTable[]> {
  const out: DbTable[] = [];
  for (const name of await baseTables(db, 'database()')) {
    const cols = await sql<
      Record<string, unknown>
    >`select column_name as name, data_type as type, character_maximum_length as len, is_nullable as nullable, column_default as def, extra from information_schema.columns where table_schema = database() and table_name = ${name} order by ordinal_position`.execute(
      db,
    );
    const stats = await sql<
      Record<string, unknown>
    >`select index_name as name, non_unique, column_name as col from information_schema.statistics where table_schema = database() and table_name = ${name} and index_name <> 'PRIMARY' order by index_name, seq_in_index`.execute(
      db,
    );
    const indexes = new Map<string, DbIndex>();
    for (const s of stats.rows) {
      const i = indexes.get(str(s.name)) ?? { name: str(s.name), unique: Number(s.non_unique) === 0, columns: [] };
      i.columns.push(str(s.col));
      indexes.set(i.name, i);
    }
    const fks = await sql<Record<string, unknown>>`
      select k.column_name as col, k.referenced_table_name as ref_table, k.referenced_column_name as ref_col, r.delete_rule as del
      from information_schema.key_column_usage k
      join information_schema.referential_constraints r on r.constraint_schema = k.constraint_schema and r.constraint_name = k.constraint_name
      where k.table_schema = database() and k.table_name = ${name} and k.referenced_table_name is not null`.execute(db);
    out.push({
      name,
      columns: cols.rows.map((c) => ({
        name: str(c.name),
        type: str(c.type).toLowerCase(),
        length: num(c.len),
        nullable: c.nullable === 'YES',
        // MariaDB reports a nullable column without a default as the string 'NULL'.
        hasDefault: (c.def !== null && c.def !== 'NULL') || /auto_increment/i.test(str(c.extra)),
      })),
      indexes: [...indexes.values()],
      fks: fks.rows.map((f) => ({
        column: str(f.col),
        table: str(f.ref_table),
        refColumn: str(f.ref_col),
        onDelete: str(f.del).toLowerCase(),
      })),
    });
  }
  return out;
}

async function sqliteTables(db: Conn): Promise<DbTable[]> {
  const tables = await sql<{
    name: string;
  }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by 1`.execute(db);
  const out: DbTable[] = [];
  for (const { name } of tables.rows) {
    const cols = await sql<Record<string, unknown>>`select * from pragma_table_info(${name})`.execute(db);
    const list = await sql<Record<string, unknown>>`select * from pragma_index_list(${name})`.execute(db);
    const indexes: DbIndex[] = [];
    for (const i of list.rows) {
      if (i.origin === 'pk') continue;
      const info = await sql<{ name: string }>`select name from pragma_index_info(${str(i.name)}) order by seqno`.execute(db);
      indexes.push({ name: str(i.name), unique: Number(i.unique) === 1, columns: info.rows.map((r) => r.name) });
    }
    const fks = await sql<Record<string, unknown>>`select * from pragma_foreign_key_list(${name})`.execute(db);
    out.push({
      name,
      columns: cols.rows.map((c) => {
        const declared = str(c.type).toLowerCase();
        const m = /^([a-z ]+?)\s*(?:\((\d+)(?:,\s*\d+)?\))?$/.exec(declared);
        return {
          name: str(c.name),
          type: m?.[1] ?? declared,
          length: m?.[2] ? Number(m[2]) : undefined,
          // SQLite lets a primary key column hold NULL unless declared NOT NULL, but an INTEGER PRIMARY KEY is the rowid.
          nullable: Number(c.notnull) === 0 && !(Number(c.pk) > 0 && declared === 'integer'),
          hasDefault: c.dflt_value !== null || (Number(c.pk) > 0 && declared === 'integer'),
        };
      }),
      indexes,
      fks: fks.rows.map((f) => ({
        column: str(f.from),
        table: str(f.table),
        refColumn: str(f.to),
        onDelete: str(f.on_delete).toLowerCase(),
      })),
    });
  }
  return out;
}

/** Every table of the database (the connection's current schema / database). */
export function introspectSql(db: Conn, dialect: SqlDialect): Promise<DbTable[]> {
  return dialect === 'postgres' ? pgTables(db) : dialect === 'mysql' ? mysqlTables(db) : sqliteTables(db);
}

/** Every collection with its indexes (not `_id_`) and `$jsonSchema` validator. */
export async function introspectMongo(db: Db): Promise<DbTable[]> {
  const out: DbTable[] = [];
  const cols = await db.listCollections({}, { nameOnly: false }).toArray();
  for (const c of cols.sort((a, b) => a.name.localeCompare(b.name))) {
    if (c.type && c.type !== 'collection') continue;
    const indexes = (await db.collection(c.name).listIndexes().toArray())
      .filter((i) => i.name !== '_id_')
      .map((i) => ({ name: String(i.name), columns: Object.keys(i.key as object), unique: i.unique === true }));
    const options = (c as { options?: { validator?: { $jsonSchema?: Record<string, unknown> } } }).options;
    out.push({ name: c.name, columns: [], indexes, fks: [], validator: options?.validator?.$jsonSchema });
  }
  return out;
}

/** Acceptable database type names per portable type. */
const TYPES: Record<SqlDialect, Record<FieldType, string[]>> = {
  postgres: {
    id: ['int4'],
    uuid: ['uuid'],
    string: ['varchar'],
    text: ['text'],
    integer: ['int4'],
    bigint: ['int8'],
    float: ['float8'],
    decimal: ['numeric'],
    boolean: ['bool'],
    date: ['date'],
    timestamp: ['timestamptz'],
    json: ['jsonb'],
  },
  mysql: {
    id: ['int'],
    uuid: ['char'],
    string: ['varchar'],
    text: ['text'],
    integer: ['int'],
    bigint: ['bigint'],
    float: ['double'],
    decimal: ['decimal'],
    boolean: ['tinyint'],
    date: ['date'],
    timestamp: ['datetime'],
    // MariaDB's JSON is LONGTEXT with a json_valid check.
    json: ['json', 'longtext'],
  },
  sqlite: {
    id: ['integer'],
    uuid: ['text'],
    string: ['varchar'],
    text: ['text'],
    integer: ['integer'],
    bigint: ['bigint'],
    float: ['real'],
    decimal: ['decimal'],
    boolean: ['boolean'],
    date: ['date'],
    timestamp: ['timestamp'],
    json: ['text'],
  },
};

const ignoredTable = (name: string) => name.startsWith('mega_') || name === MONGO_LOCK_COLLECTION;

/**
 * Differences between the models' schema and the database's, one line each (empty: they match).
 * Tables the models do not know are reported too, except Mega's own (`mega_*`).
 */
export function compareSchema(expectedRaw: SchemaSnapshot, actual: readonly DbTable[], dialect: SqlDialect | 'mongo'): string[] {
  const expected = normalizeSnapshot(expectedRaw);
  const problems: string[] = [];
  const byName = new Map(actual.map((t) => [t.name, t]));
  for (const t of actual)
    if (!expected.tables[t.name] && !ignoredTable(t.name)) problems.push(`table ${t.name} exists but no model defines it`);
  for (const spec of Object.values(expected.tables)) {
    const got = byName.get(spec.name);
    if (!got) {
      problems.push(`table ${spec.name} is missing`);
      continue;
    }
    const pk = (f: FieldSpec) => f.primary || f.name === spec.primaryKey;
    const expectIndexes = spec.indexes.filter((i) => dialect !== 'mongo' || !(i.columns.length === 1 && i.columns[0] === spec.primaryKey));
    for (const i of expectIndexes) {
      const g = got.indexes.find((x) => x.name === i.name);
      if (!g) problems.push(`index ${i.name} on ${spec.name} is missing`);
      else if (g.unique !== i.unique || g.columns.join(',') !== i.columns.join(','))
        problems.push(
          `index ${i.name} on ${spec.name} is ${g.unique ? 'unique ' : ''}(${g.columns.join(', ')}), expected ${i.unique ? 'unique ' : ''}(${i.columns.join(', ')})`,
        );
    }
    for (const g of got.indexes) {
      // MySQL creates an index for a foreign key that has none, named after the constraint.
      if (dialect === 'mysql' && g.name.endsWith('_fkey')) continue;
      if (!expectIndexes.some((i) => i.name === g.name)) problems.push(`index ${g.name} on ${spec.name} exists but no model defines it`);
    }
    if (dialect === 'mongo') {
      if (got.validator !== undefined && JSON.stringify(got.validator) !== JSON.stringify(jsonSchemaOf(spec)))
        problems.push(`the validator of ${spec.name} differs from the model`);
      continue;
    }
    const types = TYPES[dialect];
    for (const f of spec.fields) {
      const c = got.columns.find((x) => x.name === f.name);
      if (!c) {
        problems.push(`column ${spec.name}.${f.name} is missing`);
        continue;
      }
      if (!types[f.type].includes(c.type))
        problems.push(`column ${spec.name}.${f.name} is ${c.type}, expected ${f.type} (${types[f.type].join(' or ')})`);
      if (f.type === 'string' && c.length !== undefined && c.length !== (f.length ?? 255))
        problems.push(`column ${spec.name}.${f.name} has length ${c.length}, expected ${f.length ?? 255}`);
      if (!pk(f) && c.nullable !== f.nullable)
        problems.push(
          `column ${spec.name}.${f.name} is ${c.nullable ? 'nullable' : 'not null'}, expected ${f.nullable ? 'nullable' : 'not null'}`,
        );
      const wantsDefault = f.type === 'id' || (f.default !== undefined && !(f.default.kind === 'uuid' && dialect === 'sqlite'));
      if (!pk(f) && c.hasDefault !== wantsDefault)
        problems.push(
          `column ${spec.name}.${f.name} ${c.hasDefault ? 'has a default' : 'has no default'}, expected ${wantsDefault ? 'one' : 'none'}`,
        );
    }
    for (const c of got.columns)
      if (!spec.fields.some((f) => f.name === c.name))
        problems.push(`column ${spec.name}.${c.name} exists but the model has no such field`);
    for (const f of spec.fields) {
      const r = f.references;
      const g = got.fks.find((x) => x.column === f.name);
      if (!r) {
        if (g) problems.push(`column ${spec.name}.${f.name} has a foreign key but the model has no relation`);
        continue;
      }
      if (!g) problems.push(`foreign key ${spec.name}.${f.name} -> ${r.table}.${r.column} is missing`);
      else if (g.table !== r.table || g.refColumn !== r.column)
        problems.push(`foreign key ${spec.name}.${f.name} points at ${g.table}.${g.refColumn}, expected ${r.table}.${r.column}`);
      else if (r.onDelete && g.onDelete !== r.onDelete)
        problems.push(`foreign key ${spec.name}.${f.name} deletes with ${g.onDelete}, expected ${r.onDelete}`);
    }
  }
  return problems;
}
