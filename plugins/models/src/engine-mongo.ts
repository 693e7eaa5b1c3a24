/**
 * Models on MongoDB (and FerretDB) through @mega/db-mongo's client. The primary key is `_id`; an
 * `id` key gets its numbers from a counter document (`mega_counters`, `{ _id: <collection>, seq }`),
 * so a model reads the same on SQL and Mongo. Filters are built from checked conditions only: every
 * operand is a primitive or a Date, so no `$` operator can come in through a value.
 */
import { errorSummary, redactText } from '@mega/adapters';
import { ConflictError, isMegaError, MegaError, UnavailableError } from '@mega/kernel';
import type { ClientSession, Collection, Document, Filter } from 'mongodb';
import type { CompiledModel } from './define.js';
import type { Engine, Row, TxFrame } from './engine.js';
import { currentTx, runInTx } from './engine.js';
import type { Cond, OrderKey } from './query.js';
import type { ModelTx, MongoLike } from './types.js';
import { type ValueMap, valueMap } from './values.js';

export const COUNTERS = 'mega_counters';
const OPS = { ne: '$ne', gt: '$gt', gte: '$gte', lt: '$lt', lte: '$lte' } as const;

/** SQL LIKE -> an anchored RegExp (`%` any run, `_` one character, `\` escapes the next one). */
export function likeToRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === '\\' && i + 1 < pattern.length) out += (pattern[++i] as string).replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
    else if (ch === '%') out += '[\\s\\S]*';
    else if (ch === '_') out += '[\\s\\S]';
    else out += ch.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

/** Whether the server runs multi-document transactions (replica set or mongos), asked once per db. */
const txSupport = new WeakMap<object, Promise<boolean>>();

export class MongoEngine implements Engine {
  readonly alias: string;
  readonly #db: MongoLike;
  readonly #m: CompiledModel;
  readonly #v: ValueMap;
  readonly #pk: string;
  #coll: Collection<Document> | undefined;

  constructor(m: CompiledModel, db: MongoLike) {
    this.alias = db.alias;
    this.#db = db;
    this.#m = m;
    this.#v = valueMap(m, 'mongo');
    this.#pk = m.pk.name;
  }

  get #c(): Collection<Document> {
    this.#coll ??= this.#db.collection(this.#m.table);
    return this.#coll;
  }

  #session(): { session?: ClientSession } {
    const session = currentTx(this.#db)?.tx.session;
    return session ? { session } : {};
  }

  #key(name: string): string {
    return name === this.#pk ? '_id' : name;
  }

  #toDoc(record: Row): Document {
    const doc: Document = {};
    for (const [k, v] of Object.entries(record)) doc[this.#key(k)] = this.#v.write(k, v);
    return doc;
  }

  #fromDoc(doc: Document): Row {
    const row: Row = {};
    for (const name of this.#m.fieldNames) {
      const v = name === this.#pk ? doc._id : doc[name];
      row[name] = v === undefined ? null : v;
    }
    return this.#v.read(row);
  }

  #filter(conds: readonly Cond[]): Filter<Document> {
    const parts: Filter<Document>[] = [];
    for (const c of conds) {
      const key = this.#key(c.field.name);
      const w = (x: unknown) => this.#v.write(c.field.name, x);
      switch (c.op) {
        case 'eq':
          parts.push({ [key]: { $eq: w(c.value) } });
          break;
        case 'in':
          parts.push({ [key]: { $in: (c.value as unknown[]).map(w) } });
          break;
        case 'like':
          parts.push({ [key]: { $regex: likeToRegExp(c.value as string) } });
          break;
        case 'isNull':
          parts.push(c.value ? { [key]: { $eq: null } } : { [key]: { $ne: null } });
          break;
        default:
          parts.push({ [key]: { [OPS[c.op]]: w(c.value) } });
      }
    }
    return parts.length === 0 ? {} : parts.length === 1 ? (parts[0] as Filter<Document>) : { $and: parts };
  }

  #keyset(order: readonly OrderKey[], after: readonly unknown[]): Filter<Document> {
    const ors: Filter<Document>[] = [];
    for (let i = 0; i < order.length; i++) {
      const and: Document = {};
      for (let j = 0; j < i; j++) {
        const k = order[j] as OrderKey;
        and[this.#key(k.field.name)] = { $eq: this.#v.write(k.field.name, after[j]) };
      }
      const k = order[i] as OrderKey;
      and[this.#key(k.field.name)] = { [k.desc ? '$lt' : '$gt']: this.#v.write(k.field.name, after[i]) };
      ors.push(and);
    }
    return ors.length === 1 ? (ors[0] as Filter<Document>) : { $or: ors };
  }

  /** Driver errors as MegaErrors; a duplicate key's message quotes the value, so it stays out. */
  #error(error: unknown): MegaError {
    if (isMegaError(error)) return error;
    const e = error as { code?: unknown; name?: string; message?: string; keyPattern?: Record<string, unknown> };
    const details = { alias: this.alias, collection: this.#m.table };
    if (e.code === 11000 || e.code === 11001) {
      const keys = e.keyPattern ? Object.keys(e.keyPattern) : undefined;
      return new ConflictError(
        'db.conflict',
        `db "${this.alias}": duplicate key in ${this.#m.table}${keys ? ` (${keys.join(', ')})` : ''}`,
        {
          details: { ...details, ...(keys ? { keys } : {}) },
          cause: error,
        },
      );
    }
    if (/MongoNetwork|MongoServerSelection|MongoNotConnected|MongoTopologyClosed/.test(e.name ?? '')) {
      return new UnavailableError('db.unavailable', `db "${this.alias}" is unavailable: ${redactText(e.message ?? '')}`, {
        details,
        cause: error,
      });
    }
    return new MegaError('db.query_failed', `db "${this.alias}": ${redactText(e.message ?? String(error))}`, {
      details: { ...details, error: errorSummary(error).type },
      cause: error,
    });
  }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.#error(error);
    }
  }

  async find(id: unknown): Promise<Row | undefined> {
    const doc = await this.#run(() => this.#c.findOne({ _id: this.#v.write(this.#pk, id) as never }, this.#session()));
    return doc ? this.#fromDoc(doc) : undefined;
  }

  select(conds: Cond[], order: OrderKey[] | undefined, after: unknown[] | undefined, limit: number): Promise<Row[]>;
  select<T>(
    conds: Cond[],
    order: OrderKey[] | undefined,
    after: unknown[] | undefined,
    limit: number,
    then: (rows: Row[]) => T,
  ): Promise<T>;
  async select<T>(
    conds: Cond[],
    order: OrderKey[] | undefined,
    after: unknown[] | undefined,
    limit: number,
    then?: (rows: Row[]) => T,
  ): Promise<Row[] | T> {
    let filter = this.#filter(conds);
    if (after && order) filter = conds.length ? { $and: [filter, this.#keyset(order, after)] } : this.#keyset(order, after);
    const sort: Record<string, 1 | -1> = {};
    for (const o of order ?? []) sort[this.#key(o.field.name)] = o.desc ? -1 : 1;
    const docs = await this.#run(() => this.#c.find(filter, { ...this.#session(), sort, limit }).toArray());
    const rows = docs.map((d) => this.#fromDoc(d));
    return then ? then(rows) : rows;
  }

  /** `n` fresh ids from the counter (outside any transaction: ids are never reused, gaps are fine). */
  async #ids(n: number): Promise<number[]> {
    const counter = await this.#run(() =>
      this.#db
        .collection<{ _id: string; seq: number }>(COUNTERS)
        .findOneAndUpdate({ _id: this.#m.table }, { $inc: { seq: n } }, { upsert: true, returnDocument: 'after' }),
    );
    const last = Number(counter?.seq);
    return Array.from({ length: n }, (_, i) => last - n + 1 + i);
  }

  async #withIds(records: Row[]): Promise<Row[]> {
    if (this.#m.pk.type !== 'id') return records;
    const missing = records.filter((r) => r[this.#pk] === undefined);
    if (missing.length === 0) return records;
    const ids = await this.#ids(missing.length);
    missing.forEach((r, i) => {
      r[this.#pk] = ids[i];
    });
    return records;
  }

  insertOne(record: Row): Promise<Row> {
    return this.insert([record]).then((rows) => rows[0] as Row);
  }

  async insert(records: Row[]): Promise<Row[]> {
    await this.#withIds(records);
    const docs = records.map((r) => this.#toDoc(r));
    await this.#run<unknown>(() =>
      docs.length === 1
        ? this.#c.insertOne(docs[0] as Document, this.#session())
        : this.#c.insertMany(docs, { ...this.#session(), ordered: true }),
    );
    return docs.map((d) => this.#fromDoc(d));
  }

  #set(values: Row): Document {
    const set: Document = {};
    for (const [k, v] of Object.entries(values)) set[k] = this.#v.write(k, v);
    return set;
  }

  async updateById(id: unknown, values: Row): Promise<Row | undefined> {
    const doc = await this.#run(() =>
      this.#c.findOneAndUpdate(
        { _id: this.#v.write(this.#pk, id) as never },
        { $set: this.#set(values) },
        { ...this.#session(), returnDocument: 'after' },
      ),
    );
    return doc ? this.#fromDoc(doc) : undefined;
  }

  async updateWhere(conds: Cond[], values: Row): Promise<number> {
    const res = await this.#run(() => this.#c.updateMany(this.#filter(conds), { $set: this.#set(values) }, this.#session()));
    return res.matchedCount;
  }

  async deleteById(id: unknown): Promise<boolean> {
    const res = await this.#run(() => this.#c.deleteOne({ _id: this.#v.write(this.#pk, id) as never }, this.#session()));
    return res.deletedCount > 0;
  }

  async deleteWhere(conds: Cond[]): Promise<number> {
    const res = await this.#run(() => this.#c.deleteMany(this.#filter(conds), this.#session()));
    return res.deletedCount;
  }

  count(conds: Cond[]): Promise<number> {
    return this.#run(() => this.#c.countDocuments(this.#filter(conds), this.#session()));
  }

  async upsert(record: Row, conflict: string[], update: string[]): Promise<Row> {
    const filter: Document = {};
    for (const c of conflict) filter[this.#key(c)] = this.#v.write(c, record[c]);
    const set: Document = {};
    const onInsert: Document = {};
    const rec = { ...record };
    if (this.#m.pk.type === 'id' && rec[this.#pk] === undefined && !conflict.includes(this.#pk)) rec[this.#pk] = (await this.#ids(1))[0];
    for (const [k, v] of Object.entries(rec)) {
      if (conflict.includes(k)) continue; // the filter's equalities are copied into an inserted document
      if (update.includes(k)) set[this.#key(k)] = this.#v.write(k, v);
      else onInsert[this.#key(k)] = this.#v.write(k, v);
    }
    const doc = await this.#run(() =>
      this.#c.findOneAndUpdate(
        filter,
        { ...(Object.keys(set).length ? { $set: set } : {}), ...(Object.keys(onInsert).length ? { $setOnInsert: onInsert } : {}) },
        { ...this.#session(), upsert: true, returnDocument: 'after' },
      ),
    );
    return this.#fromDoc(doc as Document);
  }

  async #supportsTransactions(): Promise<boolean> {
    let known = txSupport.get(this.#db);
    if (!known) {
      known = this.#db.db
        .admin()
        .command({ hello: 1 })
        .then((hello) => typeof hello.setName === 'string' || hello.msg === 'isdbgrid');
      txSupport.set(this.#db, known);
      known.catch(() => txSupport.delete(this.#db));
    }
    return this.#run(() => known);
  }

  async transaction<T>(fn: (tx: ModelTx) => Promise<T>): Promise<T> {
    const open = currentTx(this.#db);
    if (open) {
      // No savepoints on MongoDB: the nested block joins the session; if it fails, the whole transaction will roll back.
      try {
        return await fn(open.tx);
      } catch (error) {
        open.rollbackOnly = true;
        throw error;
      }
    }
    if (!(await this.#supportsTransactions())) {
      throw new MegaError(
        'model.transactions_unsupported',
        `db "${this.alias}": this MongoDB server has no multi-document transactions (a standalone server or FerretDB); run MongoDB as a replica set, or do without ${this.#m.name}.transaction()`,
        { status: 501, details: { alias: this.alias, model: this.#m.name } },
      );
    }
    const session = this.#db.native.startSession();
    const tx: ModelTx = {
      db: this.alias,
      kind: 'mongo',
      kysely: () => {
        throw new MegaError('model.wrong_backend', `db "${this.alias}" is MongoDB: use tx.session with collection()`);
      },
      session,
    };
    const frame: TxFrame = { tx, seq: 0, rollbackOnly: false };
    try {
      session.startTransaction();
      const result = await runInTx(this.#db, frame, () => fn(tx));
      if (frame.rollbackOnly) {
        throw new MegaError(
          'model.transaction_rolled_back',
          `db "${this.alias}": a nested transaction failed; MongoDB has no savepoints, so the whole transaction was rolled back`,
          { status: 409, details: { alias: this.alias } },
        );
      }
      await this.#run(() => session.commitTransaction());
      return result;
    } catch (error) {
      if (session.inTransaction()) await session.abortTransaction().catch(() => undefined);
      throw error;
    } finally {
      await session.endSession().catch(() => undefined);
    }
  }

  query(): unknown {
    throw new MegaError('model.wrong_backend', `${this.#m.name} is on MongoDB db "${this.alias}": use collection(), not query()`, {
      details: { model: this.#m.name },
    });
  }

  kysely(): unknown {
    return this.query();
  }

  collection(): unknown {
    return this.#c;
  }
}
