/**
 * What a model needs from a database, once inputs are checked: the SQL engine (Kysely over a SqlDb)
 * and the Mongo engine implement it. Transactions are found through AsyncLocalStorage, so every model
 * call inside `transaction(fn)` on the same db joins it without passing a handle around.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Cond, OrderKey } from './query.js';
import type { ModelTx } from './types.js';

export type Row = Record<string, unknown>;

export interface Engine {
  /** The db alias. */
  readonly alias: string;
  find(id: unknown): Promise<Row | undefined>;
  /**
   * Rows matching `conds`, ordered, after the keyset position `after` (values of `order`), at most
   * `limit`; with `then`, what it makes of them, in the same step (list's page: a promise less).
   */
  select(conds: Cond[], order: OrderKey[] | undefined, after: unknown[] | undefined, limit: number): Promise<Row[]>;
  select<T>(
    conds: Cond[],
    order: OrderKey[] | undefined,
    after: unknown[] | undefined,
    limit: number,
    then: (rows: Row[]) => T,
  ): Promise<T>;
  /** Full records (defaults filled, model value space); resolves with the stored rows in the same order. */
  insert(records: Row[]): Promise<Row[]>;
  /** `insert([record])`, resolving with the one stored row (create's path: a promise less on SQL). */
  insertOne(record: Row): Promise<Row>;
  updateById(id: unknown, values: Row): Promise<Row | undefined>;
  updateWhere(conds: Cond[], values: Row): Promise<number>;
  deleteById(id: unknown): Promise<boolean>;
  deleteWhere(conds: Cond[]): Promise<number>;
  count(conds: Cond[]): Promise<number>;
  upsert(record: Row, conflict: string[], update: string[]): Promise<Row>;
  transaction<T>(fn: (tx: ModelTx) => Promise<T>): Promise<T>;
  query(): unknown;
  kysely(): unknown;
  collection(): unknown;
}

/** One open transaction on one database (keyed by the adapter object). */
export interface TxFrame {
  readonly tx: ModelTx;
  /** Savepoint names (SQL) are ours, never user input. */
  seq: number;
  /** Mongo has no savepoints: a failed nested block dooms the whole transaction. */
  rollbackOnly: boolean;
}

const ALS_KEY = Symbol.for('mega.models.tx');
const g = globalThis as unknown as Record<symbol, AsyncLocalStorage<Map<object, TxFrame>> | undefined>;
/** Shared by every copy of this module, like the registry. */
export const txStorage: AsyncLocalStorage<Map<object, TxFrame>> = g[ALS_KEY] ?? new AsyncLocalStorage<Map<object, TxFrame>>();
g[ALS_KEY] = txStorage;

export function currentTx(db: object): TxFrame | undefined {
  return txStorage.getStore()?.get(db);
}

/** Runs `fn` with `frame` as the open transaction of `db` (other dbs' transactions stay visible). */
export function runInTx<T>(db: object, frame: TxFrame, fn: () => Promise<T>): Promise<T> {
  const store = new Map(txStorage.getStore() ?? []);
  store.set(db, frame);
  return txStorage.run(store, fn);
}
