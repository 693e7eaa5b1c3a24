/**
 * What a migration file exports and what its `up`/`down` receive. Generated files import only these
 * types (erased at load), so a migration needs nothing at run time but the context it is handed.
 */
import type { SqlDialect } from '@mega/adapters';
import type { TableSpec } from '@mega/models';
import type { Kysely, sql } from 'kysely';
import type { Db, Document } from 'mongodb';
import type { SqlTypes } from './sql-types.js';

export type Dialect = SqlDialect | 'mongo';

interface BaseContext {
  /** The app and `services.dbs` alias this migration belongs to. */
  readonly app: string;
  readonly alias: string;
  /**
   * One labelled step. On dialects whose DDL cannot roll back (MySQL/MariaDB, MongoDB) each finished
   * step is recorded, so a migration that failed half way resumes after its last finished step.
   */
  step(label: string, fn: () => unknown): Promise<void>;
  /** A progress line (shown by `mega migrate` and logged at boot). */
  log(line: string): void;
}

export interface SqlMigrationContext extends BaseContext {
  readonly dialect: SqlDialect;
  /**
   * Kysely on the migration's own connection: inside its transaction on Postgres/PGlite and SQLite;
   * on MySQL every DDL statement commits by itself.
   */
  // biome-ignore lint/suspicious/noExplicitAny: a migration talks to tables no model describes any more.
  readonly db: Kysely<any>;
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  readonly schema: Kysely<any>['schema'];
  readonly sql: typeof sql;
  /** Portable column types and defaults for this dialect (`t.string(120)`, `t.now()`). */
  readonly t: SqlTypes;
  /**
   * SQLite only: re-creates `spec.name` with this definition from table `from` (default: the same
   * name) and copies its rows (the documented 12-step procedure, since SQLite cannot alter a
   * column). `copy` maps new column -> old column (default: same name, for columns in both).
   */
  rebuildTable(spec: TableSpec, options?: { from?: string; copy?: Record<string, string> }): Promise<void>;
}

/** A `$jsonSchema` validator document. */
export type JsonSchemaDoc = Document;

export interface MongoMigrationContext extends BaseContext {
  readonly dialect: 'mongo';
  /** The alias's database (the driver's own `Db`). */
  readonly db: Db;
  /** Creates a collection with a `$jsonSchema` validator (without it, with a warning, on servers that lack validators, e.g. FerretDB). */
  createCollection(name: string, validator?: JsonSchemaDoc): Promise<void>;
  /** Drops a collection (no error when it does not exist). */
  dropCollection(name: string): Promise<void>;
  /** Sets (`null`: removes) a collection's validator through `collMod` (skipped with a warning where unsupported). */
  setValidator(name: string, validator: JsonSchemaDoc | null): Promise<void>;
}

export type MigrationContext = SqlMigrationContext | MongoMigrationContext;

export interface Migration<C extends MigrationContext = MigrationContext> {
  up(ctx: C): Promise<void> | void;
  down(ctx: C): Promise<void> | void;
  /** True when `up` loses data (drops, narrowing type changes): needs `--allow-destructive` in production. */
  readonly destructive?: boolean;
  /** False: run outside a transaction (e.g. `create index concurrently` on Postgres). Default true where the dialect allows. */
  readonly transactional?: boolean;
}

export type SqlMigration = Migration<SqlMigrationContext>;
export type MongoMigration = Migration<MongoMigrationContext>;
