/**
 * Where clauses, orderings and cursors, checked before any driver sees them. A where clause may come
 * straight from a request body, so only known fields and a closed set of operators pass, each operand
 * of the field's type; everything else is `model.invalid_where` (400). The result is a list of
 * conditions the SQL and Mongo engines turn into parameters, never into SQL text or `$` operators.
 */
import { ValidationError } from '@mega/kernel';
import type { CompiledModel, FieldInfo } from './define.js';

export type Op = 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte' | 'in' | 'like' | 'isNull';
const OPS: ReadonlySet<string> = new Set<Op>(['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'like', 'isNull']);
const MAX_IN = 1000;

export interface Cond {
  field: FieldInfo;
  op: Op;
  /** The operand in the model's value space (Date for timestamps, string for bigint...); for `in`, an array; for `isNull`, a boolean. */
  value: unknown;
}

export interface OrderKey {
  field: FieldInfo;
  desc: boolean;
}

const invalid = (code: string, model: string, message: string, details: Record<string, unknown>) =>
  new ValidationError(code, `${model}: ${message}`, { details: { model, ...details } });

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/;
const INTEGER = /^-?\d{1,16}$/;
const BIG = /^-?\d{1,19}$/;
const DECIMAL = /^-?\d+(\.\d+)?$/;

const NOT = Symbol('not a value');

/**
 * One operand of `f`'s type in the model's value space, or NOT. Strings that spell a value of the
 * type are accepted (query strings carry only strings): `'42'` for integers, `'true'` for booleans,
 * ISO strings for timestamps.
 */
export function operand(f: FieldInfo, v: unknown): unknown {
  switch (f.type) {
    case 'id':
    case 'integer': {
      // 32-bit columns (serial / integer / INT): a value outside that range could never match a row
      // and would make the database answer with an error instead of nothing.
      const n = typeof v === 'number' ? v : typeof v === 'string' && INTEGER.test(v) ? Number(v) : Number.NaN;
      return Number.isInteger(n) && n >= -2147483648 && n <= 2147483647 ? n : NOT;
    }
    case 'float':
      if (typeof v === 'number') return Number.isFinite(v) ? v : NOT;
      return typeof v === 'string' && DECIMAL.test(v) ? Number(v) : NOT;
    case 'bigint':
      if (typeof v === 'number') return Number.isSafeInteger(v) ? String(v) : NOT;
      return typeof v === 'string' && BIG.test(v) ? v : NOT;
    case 'decimal':
      if (typeof v === 'number') return Number.isFinite(v) ? String(v) : NOT;
      return typeof v === 'string' && DECIMAL.test(v) ? v : NOT;
    case 'uuid':
      return typeof v === 'string' && UUID.test(v) ? v : NOT;
    case 'string':
    case 'text':
      return typeof v === 'string' ? v : NOT;
    case 'boolean':
      if (typeof v === 'boolean') return v;
      return v === 'true' ? true : v === 'false' ? false : NOT;
    case 'date':
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? NOT : v.toISOString().slice(0, 10);
      return typeof v === 'string' && DATE.test(v) ? v : NOT;
    case 'timestamp': {
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? NOT : v;
      if (typeof v !== 'string' || !DATE_TIME.test(v)) return NOT;
      const d = new Date(v);
      return Number.isNaN(d.getTime()) ? NOT : d;
    }
    case 'json':
      return NOT;
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

/**
 * Checks a where clause and returns its conditions (ANDed). `undefined` values are skipped (an
 * optional filter left out); `null` means IS NULL.
 */
export function parseWhere(m: CompiledModel, where: unknown): Cond[] {
  if (where === undefined || where === null) return [];
  if (!isPlainObject(where))
    throw invalid('model.invalid_where', m.name, 'a where clause must be a plain object of field -> condition', {});
  const conds: Cond[] = [];
  for (const key of Object.keys(where)) {
    const raw = where[key];
    if (raw === undefined) continue;
    const f = m.fields.get(key);
    if (!f) {
      throw invalid('model.invalid_where', m.name, `unknown field "${key.slice(0, 64)}" in where (fields: ${m.fieldNames.join(', ')})`, {
        field: key.slice(0, 64),
      });
    }
    if (raw === null) {
      conds.push({ field: f, op: 'isNull', value: true });
      continue;
    }
    if (!isPlainObject(raw)) {
      conds.push(cond(m, f, 'eq', raw));
      continue;
    }
    const ops = Object.keys(raw);
    if (ops.length === 0) throw invalid('model.invalid_where', m.name, `empty condition for "${key}"`, { field: key });
    for (const op of ops) {
      if (!OPS.has(op)) {
        throw invalid(
          'model.invalid_where',
          m.name,
          `unknown operator "${op.slice(0, 32)}" on "${key}" (allowed: ${[...OPS].join(', ')})`,
          {
            field: key,
            operator: op.slice(0, 32),
          },
        );
      }
      const v = raw[op];
      if (v === undefined) continue;
      conds.push(cond(m, f, op as Op, v));
    }
  }
  return conds;
}

/** The error of a bad operand (a function, not a closure made per condition: parseWhere is on every list). */
const badCond = (m: CompiledModel, f: FieldInfo, op: Op, why: string) =>
  invalid('model.invalid_where', m.name, `"${f.name}" ${op}: ${why}`, { field: f.name, operator: op });

function cond(m: CompiledModel, f: FieldInfo, op: Op, v: unknown): Cond {
  if (op === 'isNull') {
    if (typeof v !== 'boolean') throw badCond(m, f, op, 'expects true or false');
    return { field: f, op, value: v };
  }
  // eq null / ne null: IS NULL / IS NOT NULL.
  if (v === null && (op === 'eq' || op === 'ne')) return { field: f, op: 'isNull', value: op === 'eq' };
  if (op === 'like') {
    if ((f.type !== 'string' && f.type !== 'text') || typeof v !== 'string')
      throw badCond(m, f, op, 'like takes a string, on string and text fields');
    return { field: f, op, value: v };
  }
  if (op === 'in') {
    if (!Array.isArray(v) || v.length > MAX_IN) throw badCond(m, f, op, `expects an array of at most ${MAX_IN} values`);
    return {
      field: f,
      op,
      value: v.map((x) => {
        const value = operand(f, x);
        if (value === NOT) throw badCond(m, f, op, `expects ${f.type} values`);
        return value;
      }),
    };
  }
  if (f.type === 'json' || ((f.type === 'boolean' || f.type === 'uuid') && op !== 'eq' && op !== 'ne')) {
    throw badCond(m, f, op, `not supported on ${f.type} fields`);
  }
  const value = operand(f, v);
  if (value === NOT) throw badCond(m, f, op, `expects a ${f.type} value`);
  return { field: f, op, value };
}

const defaultOrders = new WeakMap<CompiledModel, OrderKey[]>();

/** The keyset ordering: the keys given, then the primary key (its direction follows the last key). */
export function parseOrder(m: CompiledModel, orderBy: unknown): OrderKey[] {
  if (orderBy === undefined || orderBy === null) {
    let order = defaultOrders.get(m);
    if (!order) {
      order = [{ field: m.pk, desc: false }];
      defaultOrders.set(m, order);
    }
    return order;
  }
  const keys: OrderKey[] = [];
  if (!isPlainObject(orderBy)) throw invalid('model.invalid_order', m.name, 'orderBy must be an object of field -> "asc" | "desc"', {});
  for (const name of Object.keys(orderBy)) {
    const dir = orderBy[name];
    if (dir === undefined) continue;
    const f = m.fields.get(name);
    if (!f || (dir !== 'asc' && dir !== 'desc')) {
      throw invalid('model.invalid_order', m.name, `cannot order by "${name.slice(0, 64)}" ${JSON.stringify(dir)?.slice(0, 16)}`, {
        field: name.slice(0, 64),
      });
    }
    // Keyset pagination compares values: NULLs sort differently per database and compare to nothing.
    if (f.nullable || f.type === 'json') {
      throw invalid(
        'model.invalid_order',
        m.name,
        `cannot order by "${name}": ${f.nullable ? 'nullable' : 'json'} fields have no total order`,
        {
          field: name,
        },
      );
    }
    keys.push({ field: f, desc: dir === 'desc' });
    if (f === m.pk) break; // the primary key is unique: later keys would never decide
  }
  if (!keys.some((k) => k.field === m.pk)) keys.push({ field: m.pk, desc: keys.at(-1)?.desc ?? false });
  return keys;
}

/** Signatures of orderings (cached arrays, like the default one of each model), computed once. */
const signatures = new WeakMap<readonly OrderKey[], string>();

/** A short signature of an ordering, so a cursor made for one ordering is refused by another. */
export function orderSignature(order: readonly OrderKey[]): string {
  const known = signatures.get(order);
  if (known !== undefined) return known;
  let h = 0x811c9dc5;
  const text = order.map((k) => `${k.field.name}:${k.desc ? 'd' : 'a'}`).join(',');
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  const signature = (h >>> 0).toString(36);
  signatures.set(order, signature);
  return signature;
}

/** The cursor after `row`: base64url JSON of the signature and the ordering's values (timestamps as ISO). */
export function encodeCursor(order: readonly OrderKey[], row: Record<string, unknown>): string {
  const values: unknown[] = [orderSignature(order)];
  for (const k of order) {
    const v = row[k.field.name];
    values.push(v instanceof Date ? v.toISOString() : v);
  }
  return base64url(JSON.stringify(values));
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * `Buffer.from(text).toString('base64url')` (UTF-8, no padding). An ASCII text, as most cursors are,
 * is encoded here: for a few dozen characters that costs less than the Buffer round trip, and a list
 * encodes one cursor per page.
 */
export function base64url(text: string): string {
  const n = text.length;
  let out = '';
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const a = text.charCodeAt(i);
    const b = text.charCodeAt(i + 1);
    const c = text.charCodeAt(i + 2);
    if ((a | b | c) > 0x7f) return Buffer.from(text).toString('base64url');
    out +=
      B64URL.charAt(a >> 2) + B64URL.charAt(((a & 3) << 4) | (b >> 4)) + B64URL.charAt(((b & 15) << 2) | (c >> 6)) + B64URL.charAt(c & 63);
  }
  if (i < n) {
    const a = text.charCodeAt(i);
    const b = i + 1 < n ? text.charCodeAt(i + 1) : 0;
    if ((a | b) > 0x7f) return Buffer.from(text).toString('base64url');
    out += B64URL.charAt(a >> 2) + B64URL.charAt(((a & 3) << 4) | (b >> 4));
    if (i + 1 < n) out += B64URL.charAt((b & 15) << 2);
  }
  return out;
}

/** The values of a cursor (model value space), or `model.invalid_cursor` (400). */
export function decodeCursor(m: CompiledModel, order: readonly OrderKey[], token: unknown): unknown[] {
  const bad = (why: string) => invalid('model.invalid_cursor', m.name, `invalid cursor: ${why}`, {});
  if (typeof token !== 'string' || token.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad('not a cursor token');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw bad('not a cursor token');
  }
  if (!Array.isArray(parsed) || parsed.length !== order.length + 1) throw bad('not a cursor of this listing');
  if (parsed[0] !== orderSignature(order)) throw bad('made for another orderBy');
  return order.map((k, i) => {
    const v = operand(k.field, parsed[i + 1]);
    if (v === NOT) throw bad(`bad value for "${k.field.name}"`);
    return v;
  });
}

/** Checks a primary key value; undefined when it cannot be one (then no row can have it). */
export function pkValue(m: CompiledModel, id: unknown): unknown {
  const v = operand(m.pk, id);
  return v === NOT ? undefined : v;
}
