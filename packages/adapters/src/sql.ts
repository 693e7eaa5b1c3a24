/**
 * The contract every SQL database adapter implements (@mega/db-postgres for pg and PGlite,
 * @mega/db-sqlite, @mega/db-mariadb), so @mega/models and @mega/migrations work on any of them
 * through one typed query builder (Kysely) and one error mapping.
 */
import type { MegaError } from '@mega/kernel';
import type { Kysely } from 'kysely';

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
}

/** True for adapters that implement {@link SqlDb}. */
export function isSqlDb(value: unknown): value is SqlDb {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<SqlDb>;
  return typeof v.kysely === 'function' && typeof v.toMegaError === 'function' && typeof v.dialect === 'string';
}
