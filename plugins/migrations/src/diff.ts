/**
 * The model diff: two SchemaSnapshots (the journal's and the models') in, an ordered list of
 * dialect-free operations out, grouped per table so that SQLite can rebuild a table once for all
 * its changes. Renames are never guessed: likely ones (a dropped and an added column of the same
 * type, or a dropped and an added table with the same columns) come back as candidates, and only an
 * explicit decision turns one into a rename.
 */

import { ValidationError } from '@mega/kernel';
import type { FieldSpec, IndexSpec, SchemaSnapshot, TableSpec } from '@mega/models';

export type Op =
  | { kind: 'createTable'; table: TableSpec }
  | { kind: 'dropTable'; table: TableSpec }
  /** `fks`: the table's foreign-key columns, whose constraints are named after the table and renamed with it. */
  | { kind: 'renameTable'; from: string; to: string; fks: FieldSpec[] }
  | { kind: 'addColumn'; table: string; field: FieldSpec }
  | { kind: 'dropColumn'; table: string; field: FieldSpec }
  | { kind: 'renameColumn'; table: string; from: string; to: string }
  | { kind: 'alterColumn'; table: string; from: FieldSpec; to: FieldSpec }
  | { kind: 'createIndex'; table: string; index: IndexSpec }
  | { kind: 'dropIndex'; table: string; index: IndexSpec }
  | { kind: 'addForeignKey'; table: string; field: FieldSpec }
  | { kind: 'dropForeignKey'; table: string; field: FieldSpec };

/**
 * What happens to one table. `before`/`after` are the full (normalized) definitions around the
 * change (undefined for a created / dropped table); `ops` run in order.
 */
export interface TableChange {
  table: string;
  before: TableSpec | undefined;
  after: TableSpec | undefined;
  ops: Op[];
}

export interface RenameCandidate {
  kind: 'table' | 'column';
  /** Column candidates: the table (new name). */
  table?: string;
  from: string;
  to: string;
}

/** Decided renames: tables old -> new, columns `table` (new name) -> old -> new. */
export interface Renames {
  tables: Map<string, string>;
  columns: Map<string, Map<string, string>>;
}

export interface Diff {
  changes: TableChange[];
  /** Likely renames that no decision covered (they are in `changes` as drop + add). */
  candidates: RenameCandidate[];
}

export const emptySnapshot = (): SchemaSnapshot => ({ version: 1, tables: {} });

export const emptyRenames = (): Renames => ({ tables: new Map(), columns: new Map() });

/** Unique fields become named unique indexes (`<table>_<col>_key`), so every dialect creates and drops them the same way. */
export function normalizeTable(spec: TableSpec): TableSpec {
  const indexes = [...spec.indexes];
  for (const f of spec.fields) {
    if (!f.unique || f.primary) continue;
    if (indexes.some((i) => i.unique && i.columns.length === 1 && i.columns[0] === f.name)) continue;
    indexes.push({ name: `${spec.name}_${f.name}_key`, columns: [f.name], unique: true });
  }
  return { ...spec, fields: spec.fields.map((f) => ({ ...f })), indexes };
}

export function normalizeSnapshot(s: SchemaSnapshot): SchemaSnapshot {
  return { version: 1, tables: Object.fromEntries(Object.entries(s.tables).map(([k, t]) => [k, normalizeTable(t)])) };
}

const sameType = (a: FieldSpec, b: FieldSpec) =>
  a.type === b.type &&
  (a.length ?? null) === (b.length ?? null) &&
  (a.precision ?? null) === (b.precision ?? null) &&
  (a.scale ?? null) === (b.scale ?? null);

const sameDefault = (a: FieldSpec, b: FieldSpec) => JSON.stringify(a.default ?? null) === JSON.stringify(b.default ?? null);

/** A column's definition changed (type, nullability, default, primary key); references and uniqueness are compared apart. */
export function columnChanged(a: FieldSpec, b: FieldSpec): boolean {
  return !sameType(a, b) || a.nullable !== b.nullable || !sameDefault(a, b) || Boolean(a.primary) !== Boolean(b.primary);
}

const sameRef = (a: FieldSpec, b: FieldSpec) => JSON.stringify(a.references ?? null) === JSON.stringify(b.references ?? null);

const sameIndex = (a: IndexSpec, b: IndexSpec) => a.unique === b.unique && a.columns.join('\0') === b.columns.join('\0');

/** Type changes that keep every value: anything else is destructive. */
const WIDENING: Record<string, string[]> = {
  integer: ['bigint', 'float', 'decimal', 'text', 'string'],
  bigint: ['decimal', 'text', 'string'],
  float: ['text'],
  string: ['text'],
  uuid: ['string', 'text'],
  date: ['timestamp', 'text'],
  boolean: ['text'],
  json: ['text'],
};

export function isDestructive(op: Op): boolean {
  switch (op.kind) {
    case 'dropTable':
    case 'dropColumn':
      return true;
    case 'alterColumn': {
      const { from, to } = op;
      if (sameType(from, to)) return false;
      if (from.type === to.type && from.type === 'string') return (to.length ?? 255) < (from.length ?? 255);
      if (from.type === to.type && from.type === 'decimal')
        return (to.precision ?? 10) < (from.precision ?? 10) || (to.scale ?? 2) < (from.scale ?? 2);
      return !WIDENING[from.type]?.includes(to.type);
    }
    default:
      return false;
  }
}

/** The operation that undoes `op`. */
export function inverse(op: Op): Op {
  switch (op.kind) {
    case 'createTable':
      return { kind: 'dropTable', table: op.table };
    case 'dropTable':
      return { kind: 'createTable', table: op.table };
    case 'renameTable':
      return { kind: 'renameTable', from: op.to, to: op.from, fks: op.fks };
    case 'addColumn':
      return { kind: 'dropColumn', table: op.table, field: op.field };
    case 'dropColumn':
      return { kind: 'addColumn', table: op.table, field: op.field };
    case 'renameColumn':
      return { kind: 'renameColumn', table: op.table, from: op.to, to: op.from };
    case 'alterColumn':
      return { kind: 'alterColumn', table: op.table, from: op.to, to: op.from };
    case 'createIndex':
      return { kind: 'dropIndex', table: op.table, index: op.index };
    case 'dropIndex':
      return { kind: 'createIndex', table: op.table, index: op.index };
    case 'addForeignKey':
      return { kind: 'dropForeignKey', table: op.table, field: op.field };
    case 'dropForeignKey':
      return { kind: 'addForeignKey', table: op.table, field: op.field };
  }
}

/** The changes that undo `changes` (reverse order, each table's ops inverted and reversed; renamed tables keep their old name). */
export function invert(changes: TableChange[]): TableChange[] {
  return [...changes].reverse().map((c) => ({
    table: c.before?.name ?? c.table,
    before: c.after,
    after: c.before,
    ops: [...c.ops].reverse().map(inverse),
  }));
}

/** Tables in an order where every table comes after the tables it references (cycles keep listed order). */
export function topoSort(tables: TableSpec[]): TableSpec[] {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const out: TableSpec[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (t: TableSpec) => {
    if (state.get(t.name)) return;
    state.set(t.name, 'visiting');
    for (const f of t.fields) {
      const target = f.references ? byName.get(f.references.table) : undefined;
      if (target && target !== t) visit(target);
    }
    state.set(t.name, 'done');
    out.push(t);
  };
  for (const t of [...tables].sort((a, b) => a.name.localeCompare(b.name))) visit(t);
  return out;
}

/**
 * Parses `--rename` values: `table.old:new`, `table.old:table.new` (columns) or `old:new` (tables),
 * checked against the two snapshots (`migrations.invalid_rename` when one does not apply).
 */
export function parseRenames(values: readonly string[], prev: SchemaSnapshot, next: SchemaSnapshot): Renames {
  const renames = emptyRenames();
  const parsed = values.map((raw) => {
    const m = /^([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?:([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?$/.exec(raw.trim());
    const bad = (why: string) => new ValidationError('migrations.invalid_rename', `--rename ${raw}: ${why}`, { details: { rename: raw } });
    if (!m || (m[2] === undefined && m[4] !== undefined)) throw bad('expected table.old:new (a column) or old:new (a table)');
    return { raw, bad, a: m[1] as string, col: m[2], b: m[3] as string, col2: m[4] };
  });
  // Tables first, so a column rename may name its table by the old or the new name.
  for (const { bad, a, col, b } of parsed) {
    if (col !== undefined) continue;
    if (!prev.tables[a]) throw bad(`the journal has no table "${a}"`);
    if (!next.tables[b]) throw bad(`the models have no table "${b}"`);
    if (next.tables[a]) throw bad(`the models still define "${a}"`);
    renames.tables.set(a, b);
  }
  for (const { bad, a, col, b, col2 } of parsed) {
    if (col === undefined) continue;
    const to = col2 ?? b;
    let table = col2 === undefined ? a : b;
    table = renames.tables.get(table) ?? table;
    const oldTable = [...renames.tables].find(([, n]) => n === table)?.[0] ?? table;
    if (!prev.tables[oldTable]?.fields.some((f) => f.name === col)) throw bad(`the journal has no column "${oldTable}.${col}"`);
    if (!next.tables[table]?.fields.some((f) => f.name === to)) throw bad(`the models have no column "${table}.${to}"`);
    const cols = renames.columns.get(table) ?? new Map<string, string>();
    renames.columns.set(table, cols);
    cols.set(col, to);
  }
  return renames;
}

/** The diff from `prevRaw` (journal) to `nextRaw` (models) with the decided `renames`. */
export function diffSnapshots(prevRaw: SchemaSnapshot, nextRaw: SchemaSnapshot, renames: Renames = emptyRenames()): Diff {
  const prev = normalizeSnapshot(prevRaw);
  const next = normalizeSnapshot(nextRaw);
  const candidates: RenameCandidate[] = [];
  const renamedFrom = new Map([...renames.tables].map(([from, to]) => [to, from]));

  const dropped = Object.values(prev.tables).filter((t) => !next.tables[t.name] && !renames.tables.has(t.name));
  const created = Object.values(next.tables).filter((t) => !prev.tables[t.name] && !renamedFrom.has(t.name));
  const fieldsKey = (t: TableSpec) =>
    t.fields
      .map((f) => `${f.name}:${f.type}:${f.length ?? ''}:${f.nullable}`)
      .sort()
      .join(',');
  for (const d of dropped) {
    for (const c of created) if (fieldsKey(d) === fieldsKey(c)) candidates.push({ kind: 'table', from: d.name, to: c.name });
  }

  const changes: TableChange[] = [];
  // Renamed tables first, so that every later op names tables by their new name.
  for (const [from, to] of renames.tables) {
    changes.push({
      table: to,
      before: prev.tables[from],
      after: { ...(prev.tables[from] as TableSpec), name: to },
      ops: [{ kind: 'renameTable', from, to, fks: (prev.tables[from] as TableSpec).fields.filter((f) => f.references) }],
    });
  }
  for (const t of topoSort(created)) changes.push({ table: t.name, before: undefined, after: t, ops: [{ kind: 'createTable', table: t }] });

  for (const after of Object.values(next.tables).sort((a, b) => a.name.localeCompare(b.name))) {
    const oldName = renamedFrom.get(after.name) ?? (prev.tables[after.name] ? after.name : undefined);
    if (oldName === undefined) continue;
    const before0 = prev.tables[oldName] as TableSpec;
    // Compare with the old definition under the new table name.
    const before: TableSpec = { ...before0, name: after.name };
    const colRenames = renames.columns.get(after.name) ?? new Map<string, string>();
    const renamedCols = new Map([...colRenames].map(([o, n]) => [n, o]));
    const ops: Op[] = [];
    const oldField = (name: string) => before.fields.find((f) => f.name === name);
    const newField = (name: string) => after.fields.find((f) => f.name === name);

    // Indexes compared by name, with the old columns seen through the column renames.
    const mapCols = (i: IndexSpec) => ({ ...i, columns: i.columns.map((c) => colRenames.get(c) ?? c) });
    const indexDrops = before.indexes.filter((i) => {
      const n = after.indexes.find((x) => x.name === i.name);
      return !n || !sameIndex(mapCols(i), n);
    });
    const indexAdds = after.indexes.filter((i) => {
      const o = before.indexes.find((x) => x.name === i.name);
      return !o || !sameIndex(mapCols(o), i);
    });
    const removed = before.fields.filter(
      (f) => !newField(colRenames.get(f.name) ?? f.name) || (!colRenames.has(f.name) && renamedCols.has(f.name)),
    );
    const added = after.fields.filter(
      (f) => !oldField(renamedCols.get(f.name) ?? f.name) || (!renamedCols.has(f.name) && colRenames.has(f.name)),
    );
    for (const r of removed) {
      for (const a of added) if (sameType(r, a)) candidates.push({ kind: 'column', table: after.name, from: r.name, to: a.name });
    }
    // Foreign keys leave before their columns change and come back after.
    for (const f of before.fields) {
      if (!f.references) continue;
      const n = newField(colRenames.get(f.name) ?? f.name);
      // MySQL cannot change a column a foreign key uses: a changed column's key leaves and comes back too.
      if (!n || !sameRef(f, n) || removed.includes(f) || columnChanged(f, n))
        ops.push({ kind: 'dropForeignKey', table: after.name, field: f });
    }
    // MySQL refuses to drop an index a foreign key uses: keys go first, indexes after.
    for (const i of indexDrops) ops.push({ kind: 'dropIndex', table: after.name, index: i });
    for (const [from, to] of colRenames) ops.push({ kind: 'renameColumn', table: after.name, from, to });
    for (const f of added) ops.push({ kind: 'addColumn', table: after.name, field: f });
    for (const f of after.fields) {
      if (added.includes(f)) continue;
      const o = oldField(renamedCols.get(f.name) ?? f.name);
      if (o && columnChanged(o, f)) ops.push({ kind: 'alterColumn', table: after.name, from: { ...o, name: f.name }, to: f });
    }
    for (const f of removed) ops.push({ kind: 'dropColumn', table: after.name, field: f });
    // Indexes before foreign keys, so MySQL uses ours instead of making its own.
    for (const i of indexAdds) ops.push({ kind: 'createIndex', table: after.name, index: i });
    for (const f of after.fields) {
      if (!f.references) continue;
      const o = added.includes(f) ? undefined : oldField(renamedCols.get(f.name) ?? f.name);
      if (!o || !sameRef(o, f) || columnChanged(o, f)) ops.push({ kind: 'addForeignKey', table: after.name, field: f });
    }

    if (!ops.length) continue;
    const renamedChange = changes.find((c) => c.table === after.name && c.ops[0]?.kind === 'renameTable');
    if (renamedChange) {
      renamedChange.ops.push(...ops);
      renamedChange.after = after;
    } else changes.push({ table: after.name, before, after, ops });
  }
  // Tables that reference others go first.
  for (const t of topoSort(dropped).reverse())
    changes.push({ table: t.name, before: t, after: undefined, ops: [{ kind: 'dropTable', table: t }] });
  // A renamed table whose definition also changed carries its final definition.
  for (const c of changes) if (c.ops[0]?.kind === 'renameTable' && c.ops.length === 1) c.after = next.tables[c.table] ?? c.after;
  return { changes, candidates };
}

export const hasDestructive = (changes: TableChange[]) => changes.some((c) => c.ops.some(isDestructive));

/** One line per operation, for prompts, dry runs and the generated file's header. */
export function describe(op: Op): string {
  switch (op.kind) {
    case 'createTable':
      return `create table ${op.table.name}`;
    case 'dropTable':
      return `drop table ${op.table.name}`;
    case 'renameTable':
      return `rename table ${op.from} to ${op.to}`;
    case 'addColumn':
      return `add column ${op.table}.${op.field.name} (${op.field.type})`;
    case 'dropColumn':
      return `drop column ${op.table}.${op.field.name}`;
    case 'renameColumn':
      return `rename column ${op.table}.${op.from} to ${op.to}`;
    case 'alterColumn':
      return `alter column ${op.table}.${op.to.name}${describeAlter(op.from, op.to)}`;
    case 'createIndex':
      return `create ${op.index.unique ? 'unique ' : ''}index ${op.index.name} on ${op.table} (${op.index.columns.join(', ')})`;
    case 'dropIndex':
      return `drop index ${op.index.name}`;
    case 'addForeignKey':
      return `add foreign key ${op.table}.${op.field.name} -> ${op.field.references?.table}.${op.field.references?.column}`;
    case 'dropForeignKey':
      return `drop foreign key ${op.table}.${op.field.name}`;
  }
}

function describeAlter(a: FieldSpec, b: FieldSpec): string {
  const parts: string[] = [];
  const type = (f: FieldSpec) =>
    f.type === 'string' ? `string(${f.length ?? 255})` : f.type === 'decimal' ? `decimal(${f.precision ?? 10},${f.scale ?? 2})` : f.type;
  if (!sameType(a, b)) parts.push(`type ${type(a)} -> ${type(b)}`);
  if (a.nullable !== b.nullable) parts.push(b.nullable ? 'nullable' : 'not null');
  if (!sameDefault(a, b)) parts.push(b.default ? 'new default' : 'no default');
  if (Boolean(a.primary) !== Boolean(b.primary)) parts.push(b.primary ? 'primary key' : 'no primary key');
  return parts.length ? `: ${parts.join(', ')}` : '';
}
