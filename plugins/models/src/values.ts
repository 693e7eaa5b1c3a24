/**
 * Values between the model and each database. The model's value space is one for all dialects
 * (timestamps are Dates, calendar dates `YYYY-MM-DD`, bigint and decimal exact strings, booleans
 * booleans, json parsed); each driver stores and returns some of them differently (SQLite has no
 * boolean or date type, MariaDB returns BIGINT as a BigInt and JSON as text, pg parses DATE into a
 * local-midnight Date). Per (model, dialect) only the fields that need a conversion get one, so a
 * model on PostgreSQL without date fields reads its rows untouched.
 */
import type { CompiledModel, FieldInfo } from './define.js';

export type Backend = 'postgres' | 'sqlite' | 'mysql' | 'mongo';
type Convert = (value: unknown) => unknown;

const pad = (n: number) => (n < 10 ? `0${n}` : String(n));
/** pg and mariadb build a Date at local midnight for a DATE column. */
const localDate = (d: Date) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;

const toDate: Convert = (v) => {
  if (v instanceof Date || v === null || v === undefined) return v;
  if (typeof v === 'number') return new Date(v);
  const s = String(v);
  // SQLite's CURRENT_TIMESTAMP (`2024-01-02 03:04:05`) is UTC without a zone.
  return new Date(/[zZ]|[+-]\d{2}:?\d{2}$/.test(s) ? s : `${s.replace(' ', 'T')}Z`);
};
const toDay: Convert = (v) => (v instanceof Date ? localDate(v) : typeof v === 'string' ? v.slice(0, 10) : v);
const toStr: Convert = (v) => (v === null || v === undefined || typeof v === 'string' ? v : String(v));
const toNum: Convert = (v) => (typeof v === 'number' || v === null || v === undefined ? v : Number(v));
const toBool: Convert = (v) =>
  typeof v === 'boolean' || v === null || v === undefined ? v : v === 1 || v === '1' || v === 1n || v === 'true';
const parseJson: Convert = (v) => {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
};
const stringifyJson: Convert = (v) => (v === null || v === undefined ? v : JSON.stringify(v));
const dateIn: Convert = (v) => (typeof v === 'string' ? new Date(v) : v);
const isoIn: Convert = (v) => (v instanceof Date ? v.toISOString() : typeof v === 'string' ? new Date(v).toISOString() : v);
const dayIn: Convert = (v) => (v instanceof Date ? v.toISOString().slice(0, 10) : v);
const boolIn: Convert = (v) => (typeof v === 'boolean' ? (v ? 1 : 0) : v);
const strIn: Convert = (v) => (typeof v === 'number' ? String(v) : v);

function readerFor(f: FieldInfo, backend: Backend): Convert | undefined {
  switch (f.type) {
    case 'id':
    case 'integer':
      return backend === 'mongo' ? undefined : toNum; // a no-op when the driver returned a number
    case 'bigint':
    case 'decimal':
      return toStr;
    case 'float':
      return backend === 'postgres' || backend === 'mongo' ? undefined : toNum;
    case 'boolean':
      return backend === 'sqlite' || backend === 'mysql' ? toBool : undefined;
    case 'date':
      return backend === 'mongo' ? undefined : toDay;
    case 'timestamp':
      return backend === 'postgres' || backend === 'mongo' ? undefined : toDate;
    case 'json':
      return backend === 'sqlite' || backend === 'mysql' ? parseJson : undefined;
    default:
      return undefined;
  }
}

function writerFor(f: FieldInfo, backend: Backend): Convert | undefined {
  switch (f.type) {
    case 'bigint':
    case 'decimal':
      return strIn;
    case 'boolean':
      return backend === 'sqlite' ? boolIn : undefined;
    case 'date':
      return dayIn;
    case 'timestamp':
      return backend === 'sqlite' ? isoIn : dateIn;
    case 'json':
      // pg would turn a JS array into a Postgres array literal; text JSON is what every SQL column takes.
      return backend === 'mongo' ? undefined : stringifyJson;
    default:
      return undefined;
  }
}

/**
 * Readers that leave a value of one type as it is (and only that type): on PostgreSQL every value of
 * a result column has the same JS type (pg and PGlite parse by the column's type OID), so when a
 * column's first non-null value has it, the whole column needs nothing. Not used for SQLite (a
 * column may hold values of any type) nor MySQL (mysql2 returns big integers and decimals as
 * numbers or strings by size).
 */
const KEEPS = new Map<Convert, (v: unknown) => boolean>([
  [toNum, (v) => typeof v === 'number'],
  [toStr, (v) => typeof v === 'string'],
  [toBool, (v) => typeof v === 'boolean'],
  [toDate, (v) => v instanceof Date],
]);

export interface ValueMap {
  /** A row from the driver, normalised in place. */
  read(row: Record<string, unknown>): Record<string, unknown>;
  /** The rows of one result, normalised in place. */
  readRows(rows: Record<string, unknown>[]): Record<string, unknown>[];
  /** One value of `field` to bind (writes and where operands). */
  write(field: string, value: unknown): unknown;
  /** The conversion `write` applies to non-null values of `field`, if any (callers that index fields). */
  writer(field: string): Convert | undefined;
  /** A record to insert/update, converted in place. */
  writeRecord(record: Record<string, unknown>): Record<string, unknown>;
}

export function valueMap(m: CompiledModel, backend: Backend): ValueMap {
  // Parallel arrays rather than [name, fn] pairs: `read` runs for every row of every result.
  const readNames: string[] = [];
  const readFns: Convert[] = [];
  const writers = new Map<string, Convert>();
  for (const f of m.fields.values()) {
    const r = readerFor(f, backend);
    if (r) {
      readNames.push(f.name);
      readFns.push(r);
    }
    const w = writerFor(f, backend);
    if (w) writers.set(f.name, w);
  }
  const writerList = [...writers];
  const nRead = readNames.length;
  const keeps = readFns.map((fn) => (backend === 'postgres' ? KEEPS.get(fn) : undefined));
  const read = (row: Record<string, unknown>) => {
    for (let i = 0; i < nRead; i++) {
      const name = readNames[i] as string;
      const v = row[name];
      if (v !== null && v !== undefined) row[name] = (readFns[i] as Convert)(v);
    }
    return row;
  };
  return {
    read,
    readRows(rows) {
      if (rows.length < 2) {
        if (rows.length === 1) read(rows[0] as Record<string, unknown>);
        return rows;
      }
      // Column by column: a column whose type already is the model's is skipped (see KEEPS).
      for (let i = 0; i < nRead; i++) {
        const name = readNames[i] as string;
        const fn = readFns[i] as Convert;
        const keep = keeps[i];
        let r = 0;
        if (keep) {
          while (r < rows.length && ((rows[r] as Record<string, unknown>)[name] ?? null) === null) r++;
          if (r === rows.length || keep((rows[r] as Record<string, unknown>)[name])) continue;
        }
        for (; r < rows.length; r++) {
          const row = rows[r] as Record<string, unknown>;
          const v = row[name];
          if (v !== null && v !== undefined) row[name] = fn(v);
        }
      }
      return rows;
    },
    writer: (field) => writers.get(field),
    write(field, value) {
      if (value === null || value === undefined) return value;
      const fn = writers.get(field);
      return fn ? fn(value) : value;
    },
    writeRecord(record) {
      for (let i = 0; i < writerList.length; i++) {
        const [name, fn] = writerList[i] as [string, Convert];
        const v = record[name];
        if (v !== null && v !== undefined) record[name] = fn(v);
      }
      return record;
    },
  };
}
