/**
 * Writes a migration file from a diff. SQL files are Kysely schema-builder calls that serve
 * Postgres/PGlite, SQLite and MySQL/MariaDB alike, with a `dialect` branch where the databases
 * differ (SQLite rebuilds a table to alter a column or a foreign key; MySQL drops indexes `on` a
 * table and foreign keys by `drop foreign key`). Mongo files create collections, indexes and
 * `$jsonSchema` validators.
 */

import type { SqlDialect } from '@mega/adapters';
import { ValidationError } from '@mega/kernel';
import type { FieldDefault, FieldSpec, IndexSpec, TableSpec } from '@mega/models';
import type { Op, TableChange } from './diff.js';
import { describe, invert, isDestructive } from './diff.js';
import { fkName } from './sql-types.js';

export interface RenderInput {
  /** The migration id (`20260101120000-create-users`). */
  id: string;
  app: string;
  alias: string;
  kind: 'sql' | 'mongo';
  changes: TableChange[];
  /** The command that made it, for the header. */
  command: string;
  generatedAt: Date;
}

const q = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
const list = (xs: readonly string[]) => `[${xs.map(q).join(', ')}]`;
const lit = (v: unknown): string => (typeof v === 'string' ? q(v) : JSON.stringify(v));

const key = (k: string) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : q(k));

/** A JS literal with single-quoted strings: on one line when it fits, else one entry per line, indented by `pad`. */
function literal(value: unknown, pad: string, width = 100): string {
  const flat = (v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map(flat).join(', ')}]`;
    if (v && typeof v === 'object') {
      const entries = Object.entries(v).filter(([, x]) => x !== undefined);
      return entries.length ? `{ ${entries.map(([k, x]) => `${key(k)}: ${flat(x)}`).join(', ')} }` : '{}';
    }
    return lit(v);
  };
  const one = flat(value);
  if (one.length + pad.length <= width || !value || typeof value !== 'object') return one;
  const inner = `${pad}  `;
  if (Array.isArray(value)) return `[\n${value.map((x) => `${inner}${literal(x, inner, width)},`).join('\n')}\n${pad}]`;
  const entries = Object.entries(value).filter(([, x]) => x !== undefined);
  return `{\n${entries.map(([k, x]) => `${inner}${key(k)}: ${literal(x, inner, width)},`).join('\n')}\n${pad}}`;
}

function unsupported(what: string, op: Op): never {
  throw new ValidationError(
    'migrations.unsupported_change',
    `${describe(op)}: ${what} is not generated; write this migration by hand (mega migrate generate writes an empty one with --empty)`,
    {
      details: { change: describe(op) },
    },
  );
}

// ---- SQL ------------------------------------------------------------------------------------

function typeCode(f: Pick<FieldSpec, 'type' | 'length' | 'precision' | 'scale'>): string {
  if (f.type === 'string') return `t.string(${f.length ?? 255})`;
  if (f.type === 'decimal') return `t.decimal(${f.precision ?? 10}, ${f.scale ?? 2})`;
  return `t.${f.type}()`;
}

function defaultCode(d: FieldDefault): string | undefined {
  if (d.kind === 'now') return 't.now()';
  if (d.kind === 'uuid') return undefined;
  return lit(d.value);
}

/** `(c) => c.notNull().defaultTo(...)`, or '' when the column has no modifier. */
function chainCode(f: FieldSpec): string {
  if (f.type === 'id' && f.primary) return ', (c) => t.identity(c)';
  let chain = 'c';
  if (f.primary) chain += '.primaryKey()';
  if (!f.nullable) chain += '.notNull()';
  if (f.default?.kind === 'uuid') chain += '.$call(t.defaultUuid)';
  else if (f.default) chain += `.defaultTo(${defaultCode(f.default)})`;
  return chain === 'c' ? '' : `, (c) => ${chain}`;
}

function fkCode(table: string, f: FieldSpec): string {
  const r = f.references as NonNullable<FieldSpec['references']>;
  const on = r.onDelete ? `, (fk) => fk.onDelete(${q(r.onDelete)})` : '';
  return `${q(fkName(table, f.name))}, [${q(f.name)}], ${q(r.table)}, [${q(r.column)}]${on}`;
}

const dropFkCode = (table: string, name: string) =>
  `sql\`alter table \${sql.table(${q(table)})} drop foreign key \${sql.ref(${q(name)})}\`.execute(db)`;

function createTableCode(t: TableSpec, pad: string): string {
  const lines = [`schema`, `  .createTable(${q(t.name)})`];
  for (const f of t.fields) lines.push(`  .addColumn(${q(f.name)}, ${typeCode(f)}${chainCode(f)})`);
  for (const f of t.fields) if (f.references) lines.push(`  .addForeignKeyConstraint(${fkCode(t.name, f)})`);
  lines.push('  .execute()');
  return lines.join(`\n${pad}`);
}

function createIndexCode(table: string, i: IndexSpec): string {
  return `schema.createIndex(${q(i.name)}).on(${q(table)}).columns(${list(i.columns)})${i.unique ? '.unique()' : ''}.execute()`;
}

/** MySQL indexes TEXT/JSON only by a prefix: those columns get their first 255 characters there. */
const MYSQL_PREFIX = 255;

function indexStep(out: Out, spec: TableSpec | undefined, table: string, i: IndexSpec): Out {
  const label = `create ${i.unique ? 'unique ' : ''}index ${i.name}`;
  const long = new Set(spec?.fields.filter((f) => f.type === 'text' || f.type === 'json').map((f) => f.name));
  if (!i.columns.some((c) => long.has(c))) return out.step(label, createIndexCode(table, i));
  const cols = i.columns.map((c) => `\${sql.ref(${q(c)})}${long.has(c) ? `(${MYSQL_PREFIX})` : ''}`).join(', ');
  return out.branch(
    'mysql',
    () =>
      out.step(
        `${label} (on the first ${MYSQL_PREFIX} characters of text columns)`,
        `sql\`create ${i.unique ? 'unique ' : ''}index \${sql.ref(${q(i.name)})} on \${sql.table(${q(table)})} (${cols})\`.execute(db)`,
      ),
    () => out.step(label, createIndexCode(table, i)),
  );
}

/** Whether SQLite must rebuild the table for this change (it can add, rename and drop plain columns, nothing more). */
function sqliteRebuilds(c: TableChange): boolean {
  return c.ops.some(
    (op) =>
      op.kind === 'alterColumn' ||
      op.kind === 'addForeignKey' ||
      op.kind === 'dropForeignKey' ||
      (op.kind === 'addColumn' && ((!op.field.nullable && !op.field.default) || op.field.default?.kind === 'now' || op.field.primary)) ||
      (op.kind === 'dropColumn' && op.field.primary),
  );
}

/** New column -> old column for the rows a rebuild copies. */
function copyMap(c: TableChange): Record<string, string> {
  const before = c.before as TableSpec;
  const after = c.after as TableSpec;
  const renamed = new Map<string, string>();
  for (const op of c.ops) if (op.kind === 'renameColumn') renamed.set(op.to, op.from);
  const copy: Record<string, string> = {};
  for (const f of after.fields) {
    const old = renamed.get(f.name) ?? f.name;
    const wasAdded = c.ops.some((op) => op.kind === 'addColumn' && op.field.name === f.name);
    if (!wasAdded && before.fields.some((b) => b.name === old)) copy[f.name] = old;
  }
  return copy;
}

class Out {
  readonly lines: string[] = [];
  readonly used = new Set<string>(['step']);
  /** The SQL dialects the code being written may run on. */
  possible = new Set<SqlDialect>(['postgres', 'sqlite', 'mysql']);
  constructor(
    /** `down` is always gated in production: its drops need no marks. */
    readonly markDestructive: boolean,
    private pad = '    ',
  ) {}
  indent<T>(fn: () => T): T {
    this.pad += '  ';
    try {
      return fn();
    } finally {
      this.pad = this.pad.slice(2);
    }
  }
  line(s: string): this {
    this.lines.push(`${this.pad}${s}`);
    return this;
  }
  /** `await step(label, () => code);` with `code` on its own lines when long. */
  step(label: string, code: string, destructive: boolean | string = false) {
    for (const name of ['schema', 'sql', 'db', 't', 'dialect', 'rebuildTable', 'createCollection', 'dropCollection', 'setValidator'])
      if (new RegExp(`(^|[^.\\w])${name}\\b`).test(code)) this.used.add(name);
    if (destructive && this.markDestructive)
      this.line(`// DESTRUCTIVE (needs --allow-destructive in production): ${typeof destructive === 'string' ? destructive : label}`);
    const one = `await step(${q(label)}, () => ${code});`;
    if (!code.includes('\n') && this.pad.length + one.length <= 130) return this.line(one);
    const body = code.split('\n').join(`\n${this.pad}  `);
    this.line(`await step(${q(label)}, () =>\n${this.pad}  ${body},\n${this.pad});`);
    return this;
  }
  /** True when the code being written may run on `d` (inside `if (dialect === ...)` branches it may not). */
  can(d: SqlDialect): boolean {
    return this.possible.has(d);
  }
  #only<T>(possible: Set<SqlDialect>, fn: () => T): T {
    const saved = this.possible;
    this.possible = possible;
    try {
      return fn();
    } finally {
      this.possible = saved;
    }
  }
  /** `if (dialect === d) {...}`, or the body alone / nothing when the enclosing branches already decide it. */
  when(d: SqlDialect, yes: () => void): this {
    if (!this.can(d)) return this;
    if (this.possible.size === 1) {
      yes();
      return this;
    }
    this.used.add('dialect');
    this.line(`if (dialect === '${d}') {`);
    this.indent(() => this.#only(new Set([d]), yes));
    this.line('}');
    return this;
  }
  /** `if (dialect === d) {...} else {...}`, collapsed when the enclosing branches already decide it (so TypeScript never sees an impossible comparison). */
  branch(d: SqlDialect, yes: () => void, no: () => void): this {
    if (!this.can(d)) {
      no();
      return this;
    }
    if (this.possible.size === 1) {
      yes();
      return this;
    }
    const rest = new Set([...this.possible].filter((x) => x !== d));
    this.used.add('dialect');
    this.line(`if (dialect === '${d}') {`);
    this.indent(() => this.#only(new Set([d]), yes));
    this.line('} else {');
    this.indent(() => this.#only(rest, no));
    this.line('}');
    return this;
  }
  /** An expression: `yes` on `d`, `no` elsewhere (a ternary only when both may run). */
  pick(d: SqlDialect, yes: string, no: string): string {
    if (!this.can(d)) return no;
    if (this.possible.size === 1) return yes;
    return `dialect === '${d}'\n  ? ${yes}\n  : ${no}`;
  }
}

function pgAlterCode(table: string, from: FieldSpec, to: FieldSpec): string {
  const parts: string[] = [];
  const alter = (what: string) => `schema.alterTable(${q(table)}).alterColumn(${q(to.name)}, (col) => col.${what}).execute()`;
  const typeChanged = from.type !== to.type || from.length !== to.length || from.precision !== to.precision || from.scale !== to.scale;
  // A default of the old type may not cast to the new one: it leaves first and comes back after.
  const familyChanged = from.type !== to.type && Boolean(from.default);
  const defaultChanged = JSON.stringify(from.default ?? null) !== JSON.stringify(to.default ?? null);
  if (familyChanged) parts.push(alter('dropDefault()'));
  if (typeChanged) {
    const type = typeCode(to);
    parts.push(
      `sql\`alter table \${sql.table(${q(table)})} alter column \${sql.ref(${q(to.name)})} type \${${type}} using \${sql.ref(${q(to.name)})}::\${${type}}\`.execute(db)`,
    );
  }
  if (familyChanged || defaultChanged) {
    if (to.default?.kind === 'uuid') parts.push(alter('setDefault(sql`gen_random_uuid()`)'));
    else if (to.default) parts.push(alter(`setDefault(${defaultCode(to.default)})`));
    else if (!familyChanged) parts.push(alter('dropDefault()'));
  }
  if (from.nullable !== to.nullable) parts.push(alter(to.nullable ? 'dropNotNull()' : 'setNotNull()'));
  if (parts.length === 1) return parts[0] as string;
  return `(async () => {\n${parts.map((p) => `  await ${p};`).join('\n')}\n})()`;
}

function sqlOp(out: Out, op: Op, spec: TableSpec | undefined): Out | undefined {
  const destructive = isDestructive(op);
  const label = describe(op);
  switch (op.kind) {
    case 'createTable':
      out.step(label, createTableCode(op.table, ''));
      for (const i of op.table.indexes) indexStep(out, op.table, op.table.name, i);
      return out;
    case 'dropTable':
      return out.step(label, `schema.dropTable(${q(op.table.name)}).execute()`, destructive);
    case 'renameTable': {
      out.step(label, `schema.alterTable(${q(op.from)}).renameTo(${q(op.to)}).execute()`);
      // Foreign-key constraints are named after their table: Postgres renames them here (MySQL
      // re-creates them around the whole table change, see sqlChanges).
      if (!op.fks.length) return out;
      out.when('postgres', () => {
        for (const f of op.fks) {
          const from = fkName(op.from, f.name);
          const to = fkName(op.to, f.name);
          out.step(`rename constraint ${from} to ${to}`, `schema.alterTable(${q(op.to)}).renameConstraint(${q(from)}, ${q(to)}).execute()`);
        }
      });
      return out;
    }
    case 'addColumn': {
      if (!op.field.nullable && !op.field.default)
        out.line('// NOT NULL without a default fails on a table that has rows: add a default, or add it nullable, backfill, then alter.');
      return out.step(
        label,
        `schema.alterTable(${q(op.table)}).addColumn(${q(op.field.name)}, ${typeCode(op.field)}${chainCode(op.field)}).execute()`,
      );
    }
    case 'dropColumn':
      return out.step(label, `schema.alterTable(${q(op.table)}).dropColumn(${q(op.field.name)}).execute()`, destructive);
    case 'renameColumn':
      return out.step(label, `schema.alterTable(${q(op.table)}).renameColumn(${q(op.from)}, ${q(op.to)}).execute()`);
    case 'alterColumn': {
      if (op.from.primary || op.to.primary || op.from.type === 'id' || op.to.type === 'id') unsupported('a primary key change', op);
      if (destructive && out.markDestructive)
        out.line(`// DESTRUCTIVE (needs --allow-destructive in production): ${label} may lose or fail to convert values`);
      // MySQL redefines the whole column; Postgres alters one property at a time (USING converts values).
      return out.branch(
        'mysql',
        () =>
          out.step(
            label,
            `schema.alterTable(${q(op.table)}).modifyColumn(${q(op.to.name)}, ${typeCode(op.to)}${chainCode(op.to)}).execute()`,
          ),
        () => out.step(label, pgAlterCode(op.table, op.from, op.to)),
      );
    }
    case 'createIndex':
      return indexStep(out, spec, op.table, op.index);
    case 'dropIndex':
      return out.step(
        label,
        out.pick(
          'mysql',
          `schema.dropIndex(${q(op.index.name)}).on(${q(op.table)}).execute()`,
          `schema.dropIndex(${q(op.index.name)}).execute()`,
        ),
      );
    case 'addForeignKey':
      return out.step(label, `schema.alterTable(${q(op.table)}).addForeignKeyConstraint(${fkCode(op.table, op.field)}).execute()`);
    case 'dropForeignKey': {
      const name = fkName(op.table, op.field.name);
      return out.step(
        label,
        out.pick('mysql', dropFkCode(op.table, name), `schema.alterTable(${q(op.table)}).dropConstraint(${q(name)}).execute()`),
      );
    }
  }
}

/**
 * A renamed table on MySQL: its foreign keys (named after the table) cannot be renamed, and an
 * index a key uses cannot be dropped; so they all leave before the change and come back after it.
 */
function mysqlRenameGroup(out: Out, c: TableChange): void {
  const before = c.before as TableSpec;
  const after = c.after as TableSpec;
  for (const f of before.fields.filter((x) => x.references))
    out.step(`drop foreign key ${fkName(before.name, f.name)}`, dropFkCode(before.name, fkName(before.name, f.name)));
  for (const op of c.ops) if (op.kind !== 'addForeignKey' && op.kind !== 'dropForeignKey') sqlOp(out, op, after);
  for (const f of after.fields.filter((x) => x.references))
    out.step(
      `add foreign key ${fkName(after.name, f.name)}`,
      `schema.alterTable(${q(after.name)}).addForeignKeyConstraint(${fkCode(after.name, f)}).execute()`,
    );
}

function sqlChanges(out: Out, changes: TableChange[]): void {
  for (const c of changes) {
    const others = () => {
      const rename = c.ops.find((op) => op.kind === 'renameTable');
      if (rename && rename.kind === 'renameTable' && rename.fks.length && c.before && c.after)
        out.branch(
          'mysql',
          () => mysqlRenameGroup(out, c),
          () => {
            for (const op of c.ops) sqlOp(out, op, c.after);
          },
        );
      else for (const op of c.ops) sqlOp(out, op, c.after);
    };
    if (c.before && c.after && sqliteRebuilds(c)) {
      const spec = c.after;
      const from = c.before.name;
      const copy = copyMap(c);
      const destructive = c.ops
        .filter(isDestructive)
        .map((op) => describe(op))
        .join('; ');
      out.branch(
        'sqlite',
        () =>
          out.step(
            `rebuild table ${spec.name} (SQLite cannot alter columns or foreign keys)`,
            `rebuildTable(\n  ${literal(spec, '  ')},\n  { from: ${q(from)}, copy: ${literal(copy, '  ')} },\n)`,
            destructive,
          ),
        others,
      );
    } else others();
  }
}

// ---- Mongo ----------------------------------------------------------------------------------

const BSON: Record<FieldSpec['type'], string[] | undefined> = {
  id: ['int', 'long'],
  uuid: ['string'],
  string: ['string'],
  text: ['string'],
  integer: ['int', 'long'],
  bigint: ['long', 'int'],
  float: ['double', 'int', 'long', 'decimal'],
  decimal: ['decimal', 'string', 'double', 'int', 'long'],
  boolean: ['bool'],
  date: ['date'],
  timestamp: ['date'],
  json: undefined,
};

/** The `$jsonSchema` of a table (the primary key is `_id`, left to MongoDB). */
export function jsonSchemaOf(t: TableSpec): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  const required: string[] = [];
  for (const f of t.fields) {
    if (f.name === t.primaryKey || f.primary) continue;
    const types = BSON[f.type];
    const one = types ? [...types, ...(f.nullable ? ['null'] : [])] : undefined;
    const prop: Record<string, unknown> = one ? { bsonType: one.length === 1 ? one[0] : one } : {};
    if (f.type === 'string') prop.maxLength = f.length ?? 255;
    properties[f.name] = prop;
    if (!f.nullable) required.push(f.name);
  }
  return { bsonType: 'object', ...(required.length ? { required } : {}), properties };
}

/** Indexes of a table on MongoDB: the primary key is `_id`'s own index. */
const mongoIndex = (t: TableSpec | undefined, i: IndexSpec) => !(t && i.columns.length === 1 && i.columns[0] === t.primaryKey);

function mongoChange(out: Out, c: TableChange): void {
  let validator = false;
  for (const op of c.ops) {
    const label = describe(op);
    const destructive = isDestructive(op);
    switch (op.kind) {
      case 'createTable': {
        out.step(label, `createCollection(${q(op.table.name)}, ${literal(jsonSchemaOf(op.table), '')})`);
        for (const i of op.table.indexes)
          if (mongoIndex(op.table, i)) out.step(`create index ${i.name}`, mongoCreateIndex(op.table.name, i));
        break;
      }
      case 'dropTable':
        out.step(label, `dropCollection(${q(op.table.name)})`, destructive);
        break;
      case 'renameTable':
        out.step(label, `db.collection(${q(op.from)}).rename(${q(op.to)})`);
        break;
      case 'addColumn': {
        validator = true;
        const d = op.field.default;
        if (d?.kind === 'value' && d.value !== null)
          out.step(
            `${label}: default on existing documents`,
            `db.collection(${q(op.table)}).updateMany({ ${key(op.field.name)}: { $exists: false } }, { $set: { ${key(op.field.name)}: ${lit(d.value)} } })`,
          );
        else if (d?.kind === 'now')
          out.step(
            `${label}: default on existing documents`,
            `db.collection(${q(op.table)}).updateMany({ ${key(op.field.name)}: { $exists: false } }, { $currentDate: { ${key(op.field.name)}: true } })`,
          );
        break;
      }
      case 'dropColumn':
        validator = true;
        out.step(label, `db.collection(${q(op.table)}).updateMany({}, { $unset: { ${key(op.field.name)}: '' } })`, destructive);
        break;
      case 'renameColumn':
        validator = true;
        out.step(
          label,
          `db.collection(${q(op.table)}).updateMany({ ${key(op.from)}: { $exists: true } }, { $rename: { ${key(op.from)}: ${q(op.to)} } })`,
        );
        break;
      case 'alterColumn':
        validator = true;
        out.line(`// ${label}: only the validator changes; existing documents keep their stored values.`);
        break;
      case 'createIndex':
        if (mongoIndex(c.after, op.index)) out.step(label, mongoCreateIndex(op.table, op.index));
        break;
      case 'dropIndex':
        if (mongoIndex(c.before, op.index)) out.step(label, `db.collection(${q(op.table)}).dropIndex(${q(op.index.name)})`);
        break;
      case 'addForeignKey':
      case 'dropForeignKey':
        out.line(`// ${label}: MongoDB has no foreign keys (the model layer keeps relations).`);
        break;
    }
  }
  if (validator && c.after)
    out.step(`validator of ${c.after.name}`, `setValidator(${q(c.after.name)}, ${literal(jsonSchemaOf(c.after), '')})`);
}

function mongoCreateIndex(table: string, i: IndexSpec): string {
  const keys = `{ ${i.columns.map((c) => `${key(c)}: 1`).join(', ')} }`;
  return `db.collection(${q(table)}).createIndex(${keys}, { name: ${q(i.name)}${i.unique ? ', unique: true' : ''} })`;
}

// ---- the file -------------------------------------------------------------------------------

export function renderMigration(input: RenderInput): string {
  const { changes, kind } = input;
  const up = new Out(true);
  const down = new Out(false);
  if (kind === 'sql') {
    sqlChanges(up, changes);
    sqlChanges(down, invert(changes));
  } else {
    for (const c of changes) mongoChange(up, c);
    for (const c of invert(changes)) mongoChange(down, c);
  }
  const destructive = changes.some((c) => c.ops.some(isDestructive));
  const summary = changes.flatMap((c) => c.ops.map((op) => `//   ${isDestructive(op) ? '[destructive] ' : ''}${describe(op)}`));
  const type = kind === 'sql' ? 'SqlMigration' : 'MongoMigration';
  const args = (o: Out) => `{ ${[...o.used].sort().join(', ')} }`;
  return [
    `// ${input.id}: generated by \`${input.command}\` (app ${input.app}, db ${input.alias}) on ${input.generatedAt.toISOString()}.`,
    '// Review and edit it before it is applied; once applied, its checksum is recorded and an edit is reported as drift.',
    '//',
    ...summary,
    `import type { ${type} } from '@mega/migrations';`,
    '',
    'export default {',
    ...(destructive ? ['  destructive: true,'] : []),
    `  async up(${args(up)}) {`,
    ...up.lines,
    '  },',
    `  async down(${args(down)}) {`,
    ...down.lines,
    '  },',
    `} satisfies ${type};`,
    '',
  ].join('\n');
}

/** An empty migration (`--empty`): for data changes and anything the generator does not write. */
export function renderEmpty(input: Omit<RenderInput, 'changes'>): string {
  const type = input.kind === 'sql' ? 'SqlMigration' : 'MongoMigration';
  const hint =
    input.kind === 'sql'
      ? "    // await step('backfill', () => db.updateTable('users').set({ role: 'member' }).where('role', 'is', null).execute());"
      : "    // await step('backfill', () => db.collection('users').updateMany({ role: null }, { $set: { role: 'member' } }));";
  return [
    `// ${input.id}: written by \`${input.command}\` (app ${input.app}, db ${input.alias}) on ${input.generatedAt.toISOString()}.`,
    `import type { ${type} } from '@mega/migrations';`,
    '',
    'export default {',
    '  async up({ db, step }) {',
    hint,
    '  },',
    '  async down({ db, step }) {},',
    `} satisfies ${type};`,
    '',
  ].join('\n');
}
