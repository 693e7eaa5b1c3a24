/**
 * The contract every SQL database adapter implements (@mega/db-postgres for pg and PGlite,
 * @mega/db-sqlite, @mega/db-mariadb), so @mega/models and @mega/migrations work on any of them
 * through one typed query builder (Kysely) and one error mapping.
 */
import type { MegaError } from '@mega/kernel';
import type { Kysely } from 'kysely';
import type { MegaTracer, TraceAttributes } from './trace.js';

export type SqlDialect = 'postgres' | 'sqlite' | 'mysql';

/** Any table map: models bring their own typed one (`Kysely<ModelTables>`). */
// biome-ignore lint/suspicious/noExplicitAny: Kysely's table map is structurally typed; `any` lets a typed map be passed in.
export type AnyTables = Record<string, any>;

export interface SqlDb {
  readonly alias: string;
  readonly dialect: SqlDialect;
  /** One Kysely instance per adapter, over the adapter's own pool/connection (built on first use). */
  kysely<DB extends AnyTables = AnyTables>(): Kysely<DB>;
  /**
   * A driver error as a typed MegaError: unique violation → `db.conflict` (409), FK violation →
   * `db.constraint` (409), lost connection → `db.unavailable` (503), statement timeout → `db.timeout` (504).
   * Never includes credentials or bound parameter values.
   */
  toMegaError(error: unknown): MegaError;
  /**
   * Optional fast path (added for @mega/models): runs one statement Kysely already compiled, outside
   * any transaction, straight on the adapter's driver — the same connection rules as
   * `kysely().executeQuery(query)` (a single-connection driver waits for an open Kysely transaction
   * instead of running inside it), the adapter's stats, but without Kysely's executor layers, which
   * cost a model 10-20% more client CPU per statement than the raw driver (`npm run bench:models`).
   * Errors may be the driver's own: callers pass them through `toMegaError`. Adapters without it are
   * used through `kysely()`.
   */
  execute?<R = Record<string, unknown>>(query: SqlStatement): Promise<SqlResult<R>>;
}

/** A compiled statement: what Kysely's `compile()` gives (`$1` or `?` placeholders per dialect). */
export interface SqlStatement {
  readonly sql: string;
  readonly parameters: readonly unknown[];
}

/** The shape of Kysely's `QueryResult`: rows, and for INSERT/UPDATE/DELETE the rows affected. */
export interface SqlResult<R> {
  readonly rows: R[];
  readonly numAffectedRows?: bigint;
  /** MySQL: the auto-increment id of an INSERT. */
  readonly insertId?: bigint;
}

/** True for adapters that implement {@link SqlDb}. */
export function isSqlDb(value: unknown): value is SqlDb {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<SqlDb>;
  return typeof v.kysely === 'function' && typeof v.toMegaError === 'function' && typeof v.dialect === 'string';
}

/** At most this much of a statement goes into a span's `db.query.text`. */
const MAX_QUERY_TEXT = 1000;

/**
 * The client span of one SQL statement (the same for every SQL adapter): named by its first keyword
 * (`SELECT`, `INSERT`, `BEGIN`...), with `db.system.name`, `db.operation.name`, `db.query.text` (the
 * statement as sent: placeholders, never the bound values; 1,000 characters at most) and `mega.db.alias`.
 */
export function sqlSpan(system: string, alias: string, sql: string): { name: string; attributes: TraceAttributes } {
  const name = /^\s*([A-Za-z]+)/.exec(sql)?.[1]?.toUpperCase() ?? 'QUERY';
  return {
    name,
    attributes: {
      'db.system.name': system,
      'db.operation.name': name,
      'db.query.text': sql.length > MAX_QUERY_TEXT ? `${sql.slice(0, MAX_QUERY_TEXT)}...` : sql,
      'mega.db.alias': alias,
    },
  };
}

/**
 * Records a statement a driver already finished (Kysely's `log` hook: every statement built with
 * `kysely()`, transactions' BEGIN/COMMIT included) as a client span of the active trace. Call it only
 * when `tracer.recording()`: sampled-out requests then build nothing.
 */
export function traceStatement(tracer: MegaTracer, system: string, alias: string, sql: string, durationMs: number, error?: unknown): void {
  const { name, attributes } = sqlSpan(system, alias, sql);
  tracer.record(name, 'client', attributes, durationMs, error);
}
