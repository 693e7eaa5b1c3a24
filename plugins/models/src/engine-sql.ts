/**
 * Models on SQL through the adapter's Kysely (`SqlDb`): Postgres/PGlite, SQLite, MySQL/MariaDB.
 *
 * Every value is a bound parameter; identifiers come from the model definition only. The statements
 * of the hot paths (find, list, create, update by id, count) are compiled once per shape with
 * placeholder objects in place of the values, then re-run with the values swapped in: building and
 * compiling a Kysely query costs ~9 µs per find, more than the rest of the model layer together.
 * Outside transactions a compiled statement goes to the adapter's `execute` fast path when it has
 * one (Kysely's executor layers cost another 10-20% of a raw driver call); inside, to the
 * transaction's Kysely. find, select and a one-row insert are not async functions: each attaches one
 * `then` (decode rows, map errors) to the driver's promise, as every extra promise layer and closure
 * showed up in `npm run bench:models` as CPU per operation.
 */
import type { SqlDb } from '@mega/adapters';
import { isMegaError, MegaError } from '@mega/kernel';
import type { CompiledQuery, ControlledTransaction, Expression, ExpressionBuilder, Kysely, QueryResult, SqlBool } from 'kysely';
import { sql } from 'kysely';
import type { CompiledModel } from './define.js';
import type { Engine, Row, TxFrame } from './engine.js';
import { currentTx, runInTx } from './engine.js';
import type { Cond, OrderKey } from './query.js';
import type { ModelTx } from './types.js';
import { type ValueMap, valueMap } from './values.js';

/** A placeholder for the i-th value of a statement compiled once. */
class Param {
  constructor(readonly i: number) {}
}

/** A statement compiled once, and where each of its parameters comes from. */
interface Stmt {
  readonly compiled: CompiledQuery;
  /**
   * Per parameter: the index of its value in a call's values, or -1 for a constant Kysely put there
   * itself (`compiled.parameters[i]`). Null when parameter i is value i for every i, so a call's
   * values array is bound as it is.
   */
  readonly slots: Int32Array | null;
}

// biome-ignore lint/suspicious/noExplicitAny: the table map is the model's, checked by the model layer, not by Kysely's types.
type AnyDb = any;
type Eb = ExpressionBuilder<AnyDb, string>;
type V = (i: number) => unknown;

const MAX_CACHED = 256;
const OPS = { eq: '=', ne: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/** A key for the statement shape of `conds` (fields, operators, list lengths), not their values. */
function condsKey(conds: readonly Cond[]): string {
  let key = '';
  for (const c of conds) {
    key += `${c.field.name}:${c.op}`;
    if (c.op === 'in') key += `:${(c.value as unknown[]).length}`;
    else if (c.op === 'isNull') key += c.value ? ':1' : ':0';
    key += ',';
  }
  return key;
}

/** The statement shape of a select (what its cache key encodes), without the values. */
interface SelectShape {
  readonly conds: ReadonlyArray<{ field: Cond['field']; op: Cond['op']; n: unknown }>;
  readonly order: readonly OrderKey[] | undefined;
  readonly nAfter: number;
  readonly stmt: Stmt;
}

/** What distinguishes shapes beyond field and operator: a list's length, IS NULL or IS NOT NULL. */
const shapeArg = (c: Cond) => (c.op === 'in' ? (c.value as unknown[]).length : c.op === 'isNull' ? c.value : undefined);

function sameShape(shape: SelectShape, conds: readonly Cond[], order: readonly OrderKey[] | undefined, nAfter: number): boolean {
  if (shape.nAfter !== nAfter || shape.conds.length !== conds.length) return false;
  if (shape.order !== order) {
    if (!shape.order || !order || shape.order.length !== order.length) return false;
    for (let i = 0; i < order.length; i++) {
      const a = shape.order[i] as OrderKey;
      const b = order[i] as OrderKey;
      if (a.field !== b.field || a.desc !== b.desc) return false;
    }
  }
  for (let i = 0; i < conds.length; i++) {
    const a = shape.conds[i] as SelectShape['conds'][number];
    const b = conds[i] as Cond;
    if (a.field !== b.field || a.op !== b.op || a.n !== shapeArg(b)) return false;
  }
  return true;
}

/** Orderings are cached arrays (the default one per model): their keys are computed once. */
const orderKeys = new WeakMap<readonly OrderKey[], string>();
function orderKey(order: readonly OrderKey[] | undefined): string {
  if (!order) return '';
  let key = orderKeys.get(order);
  if (key === undefined) {
    key = order.map((o) => `${o.field.name}${o.desc ? '-' : '+'}`).join(',');
    orderKeys.set(order, key);
  }
  return key;
}

export class SqlEngine implements Engine {
  readonly alias: string;
  readonly #db: SqlDb;
  readonly #m: CompiledModel;
  readonly #v: ValueMap;
  readonly #mysql: boolean;
  readonly #sqlite: boolean;
  readonly #cache = new Map<string | number, Stmt>();
  readonly #inserts = new Map<string | number, Stmt>();
  /** The previous select's shape and statement (see select). */
  #lastSelect: SelectShape | undefined;
  /** Each field's position in the model (insert shape keys), and its write conversion by position. */
  readonly #fieldIndex: ReadonlyMap<string, number>;
  readonly #writeAt: ReadonlyArray<((value: unknown) => unknown) | undefined>;

  constructor(m: CompiledModel, db: SqlDb) {
    this.alias = db.alias;
    this.#db = db;
    this.#m = m;
    this.#v = valueMap(m, db.dialect);
    this.#mysql = db.dialect === 'mysql';
    this.#sqlite = db.dialect === 'sqlite';
    this.#fieldIndex = new Map(m.fieldNames.map((name, i) => [name, i]));
    this.#writeAt = m.fieldNames.map((name) => this.#v.writer(name));
  }

  /** The Kysely to run on: the open transaction's on this db, else the adapter's. */
  #k(): Kysely<AnyDb> {
    const frame = currentTx(this.#db);
    return (frame ? frame.tx.kysely() : this.#db.kysely()) as Kysely<AnyDb>;
  }

  /**
   * Runs the statement `build` makes, with `values`. With a `key`, the statement is compiled once
   * with placeholders (`v(i)` returns one) and reused; without, `v(i)` is the value itself.
   */
  async #exec(
    key: string | undefined,
    values: unknown[],
    build: (k: Kysely<AnyDb>, v: V) => { compile(): CompiledQuery },
  ): Promise<QueryResult<Row>> {
    const query =
      key === undefined
        ? build(this.#db.kysely(), (i) => values[i]).compile()
        : this.#bind(this.#cache.get(key) ?? this.#compile(key, build), values);
    try {
      return await this.#send(query);
    } catch (error) {
      throw this.#db.toMegaError(error);
    }
  }

  /**
   * Compiles the statement of shape `key` with placeholders, once (up to MAX_CACHED shapes per
   * cache; one-row inserts have their own, keyed by column bit sets).
   */
  #compile(key: string | number, build: (k: Kysely<AnyDb>, v: V) => { compile(): CompiledQuery }, cache = this.#cache): Stmt {
    const compiled = build(this.#db.kysely(), (i) => new Param(i)).compile();
    const params = compiled.parameters;
    const slots = new Int32Array(params.length);
    let identity = true;
    for (let i = 0; i < params.length; i++) {
      const p = params[i];
      slots[i] = p instanceof Param ? p.i : -1;
      if (slots[i] !== i) identity = false;
    }
    const stmt: Stmt = { compiled, slots: identity ? null : slots };
    if (cache.size < MAX_CACHED) cache.set(key, stmt);
    return stmt;
  }

  /** The compiled statement with `values` in its placeholders' places. */
  #bind(stmt: Stmt, values: unknown[]): CompiledQuery {
    const c = stmt.compiled;
    const n = c.parameters.length;
    let bound: unknown[];
    if (stmt.slots === null && values.length === n) bound = values;
    else {
      bound = new Array<unknown>(n);
      for (let i = 0; i < n; i++) {
        const slot = stmt.slots === null ? i : (stmt.slots[i] as number);
        bound[i] = slot < 0 ? c.parameters[i] : values[slot];
      }
    }
    return { query: c.query, queryId: c.queryId, sql: c.sql, parameters: bound };
  }

  /**
   * Runs a compiled statement: outside a transaction on the adapter's fast path when it has one (see
   * SqlDb.execute), else on the open transaction's Kysely or the adapter's. The driver's own promise:
   * callers attach their decoding and {@link #fail} in one `then`.
   */
  #send(query: CompiledQuery): Promise<QueryResult<Row>> {
    try {
      const db = this.#db;
      const frame = currentTx(db);
      if (!frame && db.execute) return db.execute<Row>(query) as Promise<QueryResult<Row>>;
      return (frame ? (frame.tx.kysely() as Kysely<AnyDb>) : db.kysely<AnyDb>()).executeQuery(query) as Promise<QueryResult<Row>>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A driver error, as the adapter's typed MegaError (rejection handler). */
  readonly #fail = (error: unknown): never => {
    throw this.#db.toMegaError(error);
  };

  /** The rows of a result, normalised (resolution handler). */
  readonly #rows = (res: QueryResult<Row>): Row[] => this.#read(res.rows);

  /** The first row of a result, normalised, or undefined (resolution handler). */
  readonly #first = (res: QueryResult<Row>): Row | undefined => {
    const row = res.rows[0];
    return row ? this.#v.read(row) : undefined;
  };

  /** The values of `conds`, in the order #where consumes them. */
  #condValues(conds: readonly Cond[], into: unknown[]): void {
    for (const c of conds) {
      if (c.op === 'isNull') continue;
      if (c.op === 'in') for (const x of c.value as unknown[]) into.push(this.#v.write(c.field.name, x));
      else into.push(this.#v.write(c.field.name, c.value));
    }
  }

  #where(eb: Eb, conds: readonly Cond[], v: V, start: number): Expression<SqlBool> {
    let i = start;
    const parts: Expression<SqlBool>[] = [];
    for (const c of conds) {
      const col = c.field.name;
      switch (c.op) {
        case 'isNull':
          parts.push(eb(col, c.value ? 'is' : 'is not', null));
          break;
        case 'in': {
          const n = (c.value as unknown[]).length;
          if (n === 0) parts.push(sql<SqlBool>`1 = 0`);
          else
            parts.push(
              eb(
                col,
                'in',
                Array.from({ length: n }, () => v(i++)),
              ),
            );
          break;
        }
        case 'like':
          // Backslash escapes by default on Postgres and MySQL; SQLite has no default escape character.
          parts.push(this.#sqlite ? sql<SqlBool>`${sql.ref(col)} like ${v(i++)} escape '\\'` : eb(col, 'like', v(i++)));
          break;
        default:
          parts.push(eb(col, OPS[c.op], v(i++)));
      }
    }
    return parts.length === 1 ? (parts[0] as Expression<SqlBool>) : eb.and(parts);
  }

  /** Rows after the keyset position: (a > x) OR (a = x AND b > y) OR ... with each key's direction. */
  #keyset(eb: Eb, order: readonly OrderKey[], v: V, base: number): Expression<SqlBool> {
    const ors: Expression<SqlBool>[] = [];
    for (let i = 0; i < order.length; i++) {
      const ands: Expression<SqlBool>[] = [];
      for (let j = 0; j < i; j++) ands.push(eb((order[j] as OrderKey).field.name, '=', v(base + j)));
      const k = order[i] as OrderKey;
      ands.push(eb(k.field.name, k.desc ? '<' : '>', v(base + i)));
      ors.push(ands.length === 1 ? (ands[0] as Expression<SqlBool>) : eb.and(ands));
    }
    return ors.length === 1 ? (ors[0] as Expression<SqlBool>) : eb.or(ors);
  }

  #read(rows: Row[]): Row[] {
    return this.#v.readRows(rows);
  }

  /** Not async (see the file comment): a synchronous throw here becomes the caller's rejection (ModelImpl). */
  find(id: unknown): Promise<Row | undefined> {
    const stmt =
      this.#cache.get('find') ?? this.#compile('find', (k, v) => k.selectFrom(this.#m.table).selectAll().where(this.#m.pk.name, '=', v(0)));
    return this.#send(this.#bind(stmt, [this.#v.write(this.#m.pk.name, id)])).then(this.#first, this.#fail);
  }

  select(conds: Cond[], order: OrderKey[] | undefined, after: unknown[] | undefined, limit: number): Promise<Row[]>;
  select<T>(
    conds: Cond[],
    order: OrderKey[] | undefined,
    after: unknown[] | undefined,
    limit: number,
    then: (rows: Row[]) => T,
  ): Promise<T>;
  select<T>(
    conds: Cond[],
    order: OrderKey[] | undefined,
    after: unknown[] | undefined,
    limit: number,
    then?: (rows: Row[]) => T,
  ): Promise<Row[] | T> {
    const values: unknown[] = [];
    this.#condValues(conds, values);
    const nConds = values.length;
    if (after && order) for (let j = 0; j < order.length; j++) values.push(this.#v.write((order[j] as OrderKey).field.name, after[j]));
    const nAfter = values.length - nConds;
    values.push(limit);
    // The shape of the previous select is often this one's (a list endpoint): reused without building its key.
    const last = this.#lastSelect;
    let stmt = last && sameShape(last, conds, order, nAfter) ? last.stmt : undefined;
    if (!stmt) {
      const key = `s|${condsKey(conds)}|${orderKey(order)}|${nAfter}`;
      stmt =
        this.#cache.get(key) ??
        this.#compile(key, (k, v) => {
          let q = k.selectFrom(this.#m.table).selectAll();
          if (conds.length) q = q.where((eb) => this.#where(eb, conds, v, 0));
          if (nAfter && order) q = q.where((eb) => this.#keyset(eb, order, v, nConds));
          for (const o of order ?? []) q = q.orderBy(o.field.name, o.desc ? 'desc' : 'asc');
          return q.limit(v(values.length - 1) as number);
        });
      this.#lastSelect = { conds: conds.map((c) => ({ field: c.field, op: c.op, n: shapeArg(c) })), order, nAfter, stmt };
    }
    const rows: (res: QueryResult<Row>) => Row[] | T = then ? (res) => then(this.#read(res.rows)) : this.#rows;
    return this.#send(this.#bind(stmt, values)).then(rows, this.#fail);
  }

  insert(records: Row[]): Promise<Row[]> {
    if (!this.#mysql && records.length === 1) return this.#insertOne(records[0] as Row, true).then(this.#rows, this.#fail);
    return this.#insertRows(records);
  }

  insertOne(record: Row): Promise<Row> {
    if (this.#mysql) return this.#insertRows([record]).then((rows) => rows[0] as Row);
    return this.#insertOne(record, true).then(this.#first, this.#fail) as Promise<Row>;
  }

  async #insertRows(records: Row[]): Promise<Row[]> {
    const m = this.#m;
    const pk = m.pk.name;
    if (this.#mysql) {
      // MySQL has no INSERT ... RETURNING: insert, then read back by the key (insertId for auto-increment).
      const one = async (record: Row) => {
        const res = await this.#insertOne(record, false).then(undefined, this.#fail);
        const id = record[pk] ?? (res.insertId === undefined ? undefined : Number(res.insertId));
        const row = id === undefined ? undefined : await this.find(id);
        if (!row)
          throw new MegaError('db.query_failed', `${m.name}: the inserted row could not be read back`, { details: { model: m.name } });
        return row;
      };
      if (records.length === 1) return [await one(records[0] as Row)];
      return this.transaction(async () => {
        const rows: Row[] = [];
        for (const r of records) rows.push(await one(r));
        return rows;
      });
    }
    const converted = records.map((r) => this.#v.writeRecord({ ...r }));
    const res = await this.#exec(undefined, [], (k) => k.insertInto(m.table).values(converted).returningAll());
    const rows = this.#read(res.rows);
    // RETURNING order is not promised: give rows back in input order (by given key, else by the auto-increment id).
    if (records.every((r) => r[pk] !== undefined)) {
      const at = new Map(records.map((r, i) => [String(r[pk]), i]));
      return rows.sort((a, b) => (at.get(String(a[pk])) ?? 0) - (at.get(String(b[pk])) ?? 0));
    }
    return rows.sort((a, b) => (a[pk] as number) - (b[pk] as number));
  }

  /** The driver's promise, errors unmapped: callers attach {@link #fail}. */
  #insertOne(record: Row, returning: boolean): Promise<QueryResult<Row>> {
    const cols = Object.keys(record);
    const values = new Array<unknown>(cols.length);
    // The shape's key: the columns as a bit set over the model's fields when they come in field
    // order (records made by the model always do), else their names.
    let mask = returning ? 1 : 0;
    let last = -1;
    for (let i = 0; i < cols.length; i++) {
      const c = cols[i] as string;
      const at = this.#fieldIndex.get(c);
      // As #v.write(c, value), with the field's position known.
      const value = record[c];
      const write = at === undefined ? undefined : this.#writeAt[at];
      values[i] = write === undefined || value === null || value === undefined ? value : write(value);
      if (mask >= 0 && at !== undefined && at > last && at < 30) {
        mask |= 2 << at;
        last = at;
      } else mask = -1;
    }
    const key = mask >= 0 ? mask : `i|${returning ? 'r' : ''}|${cols.join(',')}`;
    const stmt =
      this.#inserts.get(key) ??
      this.#compile(
        key,
        (k, v) => {
          const q = k.insertInto(this.#m.table).values(Object.fromEntries(cols.map((c, i) => [c, v(i)])));
          return returning ? q.returningAll() : q;
        },
        this.#inserts,
      );
    return this.#send(this.#bind(stmt, values));
  }

  async updateById(id: unknown, patch: Row): Promise<Row | undefined> {
    const m = this.#m;
    const cols = Object.keys(patch);
    const values = cols.map((c) => this.#v.write(c, patch[c]));
    values.push(this.#v.write(m.pk.name, id));
    const res = await this.#exec(`u|${this.#mysql ? '' : 'r'}|${cols.join(',')}`, values, (k, v) => {
      const q = k
        .updateTable(m.table)
        .set(Object.fromEntries(cols.map((c, i) => [c, v(i)])))
        .where(m.pk.name, '=', v(cols.length));
      return this.#mysql ? q : q.returningAll();
    });
    // MySQL: no UPDATE ... RETURNING, and affected rows may count changed rather than matched rows.
    if (this.#mysql) return this.find(id);
    const row = res.rows[0];
    return row ? this.#v.read(row) : undefined;
  }

  async updateWhere(conds: Cond[], patch: Row): Promise<number> {
    const m = this.#m;
    const cols = Object.keys(patch);
    const values = cols.map((c) => this.#v.write(c, patch[c]));
    this.#condValues(conds, values);
    const res = await this.#exec(`uw|${cols.join(',')}|${condsKey(conds)}`, values, (k, v) =>
      k
        .updateTable(m.table)
        .set(Object.fromEntries(cols.map((c, i) => [c, v(i)])))
        .where((eb) => this.#where(eb, conds, v, cols.length)),
    );
    return Number(res.numAffectedRows ?? 0n);
  }

  async deleteById(id: unknown): Promise<boolean> {
    const m = this.#m;
    const res = await this.#exec('d', [this.#v.write(m.pk.name, id)], (k, v) => k.deleteFrom(m.table).where(m.pk.name, '=', v(0)));
    return Number(res.numAffectedRows ?? 0n) > 0;
  }

  async deleteWhere(conds: Cond[]): Promise<number> {
    const m = this.#m;
    const values: unknown[] = [];
    this.#condValues(conds, values);
    const res = await this.#exec(`dw|${condsKey(conds)}`, values, (k, v) =>
      k.deleteFrom(m.table).where((eb) => this.#where(eb, conds, v, 0)),
    );
    return Number(res.numAffectedRows ?? 0n);
  }

  async count(conds: Cond[]): Promise<number> {
    const m = this.#m;
    const values: unknown[] = [];
    this.#condValues(conds, values);
    const res = await this.#exec(`c|${condsKey(conds)}`, values, (k, v) => {
      const q = k.selectFrom(m.table).select((eb) => eb.fn.countAll().as('n'));
      return conds.length ? q.where((eb) => this.#where(eb, conds, v, 0)) : q;
    });
    return Number(res.rows[0]?.n ?? 0);
  }

  async upsert(record: Row, conflict: string[], update: string[]): Promise<Row> {
    const m = this.#m;
    const rec = this.#v.writeRecord({ ...record });
    if (this.#mysql) {
      // The auto-increment `id = LAST_INSERT_ID(id)` trick is not needed: the row is read back by its unique key.
      const set = update.length ? update : [conflict[0] as string];
      await this.#exec(undefined, [], (k) =>
        k
          .insertInto(m.table)
          .values(rec)
          .onDuplicateKeyUpdate(Object.fromEntries(set.map((c) => [c, sql`values(${sql.ref(c)})`]))),
      );
      const conds: Cond[] = conflict.map((c) => ({ field: m.fields.get(c) as Cond['field'], op: 'eq', value: record[c] }));
      const row = (await this.select(conds, undefined, undefined, 1))[0];
      if (!row)
        throw new MegaError('db.query_failed', `${m.name}: the upserted row could not be read back`, { details: { model: m.name } });
      return row;
    }
    // With nothing to update, a no-op assignment still makes the existing row come back through RETURNING.
    const set = update.length ? update : [conflict[0] as string];
    const res = await this.#exec(undefined, [], (k) =>
      k
        .insertInto(m.table)
        .values(rec)
        .onConflict((oc) => oc.columns(conflict).doUpdateSet((eb) => Object.fromEntries(set.map((c) => [c, eb.ref(`excluded.${c}`)]))))
        .returningAll(),
    );
    return this.#v.read(res.rows[0] as Row);
  }

  async transaction<T>(fn: (tx: ModelTx) => Promise<T>): Promise<T> {
    const frame = currentTx(this.#db);
    if (frame) return this.#savepoint(frame, fn);
    let trx: ControlledTransaction<AnyDb>;
    try {
      trx = await this.#db.kysely<AnyDb>().startTransaction().execute();
    } catch (error) {
      throw this.#db.toMegaError(error);
    }
    const tx: ModelTx = {
      db: this.alias,
      kind: 'sql',
      kysely: () => trx as never,
      session: undefined,
    };
    const top: TxFrame & { trx: ControlledTransaction<AnyDb> } = { tx, seq: 0, rollbackOnly: false, trx };
    let result: T;
    try {
      result = await runInTx(this.#db, top, () => fn(tx));
    } catch (error) {
      await trx
        .rollback()
        .execute()
        .catch(() => undefined);
      throw error;
    }
    try {
      await trx.commit().execute();
    } catch (error) {
      await trx
        .rollback()
        .execute()
        .catch(() => undefined);
      throw isMegaError(error) ? error : this.#db.toMegaError(error);
    }
    return result;
  }

  /** A nested transaction: a savepoint, rolled back to when `fn` throws (the outer transaction goes on). */
  async #savepoint<T>(frame: TxFrame, fn: (tx: ModelTx) => Promise<T>): Promise<T> {
    const trx = (frame as TxFrame & { trx: ControlledTransaction<AnyDb, string[]> }).trx;
    const name = `mega_sp_${++frame.seq}`;
    try {
      await trx.savepoint(name).execute();
    } catch (error) {
      throw this.#db.toMegaError(error);
    }
    let result: T;
    try {
      result = await fn(frame.tx);
    } catch (error) {
      await (trx as ControlledTransaction<AnyDb, [string]>)
        .rollbackToSavepoint(name)
        .execute()
        .catch(() => undefined);
      throw error;
    }
    try {
      await (trx as ControlledTransaction<AnyDb, [string]>).releaseSavepoint(name).execute();
    } catch (error) {
      throw this.#db.toMegaError(error);
    }
    return result;
  }

  query(): unknown {
    return this.#k().selectFrom(this.#m.table);
  }

  kysely(): unknown {
    return this.#k();
  }

  collection(): unknown {
    throw new MegaError('model.wrong_backend', `${this.#m.name} is on SQL db "${this.alias}": use query() or kysely(), not collection()`, {
      details: { model: this.#m.name },
    });
  }
}
