/**
 * One SQLite database per alias through `node:sqlite` (built into Node: no native build), in WAL
 * mode with a busy timeout and foreign keys on. Every statement, raw or built, goes through the one
 * Kysely instance: it serialises the single connection, so a transaction holds it and nothing from
 * elsewhere runs inside it.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import type { Adapter, AnyTables, MegaTracer, OpStatsSnapshot, SqlDb } from '@mega/adapters';
import { OpStats, redactText, redactUrl, serviceOptions, traceStatement } from '@mega/adapters';
import type { Logger, ServiceDeclaration, Static } from '@mega/kernel';
import { ConfigError, ConflictError, isMegaError, MegaError, Type, UnavailableError } from '@mega/kernel';
import type { LogEvent } from 'kysely';
import { CompiledQuery, Kysely } from 'kysely';
import { kyselyDatabase, NodeSqliteDialect } from './dialect.js';

export const SQLITE_DRIVERS = ['sqlite', 'sqlite3'] as const;

/** `services.dbs.<alias>` served by this plugin: the one source of its type and defaults. */
export const SqliteDeclaration = Type.Object(
  {
    driver: Type.Union(SQLITE_DRIVERS.map((d) => Type.Literal(d))),
    /** `sqlite:./data/app.db`, `sqlite:/abs/app.db`, a plain path, or `:memory:`; default `.mega/sqlite/<alias>.db`. */
    url: Type.Optional(Type.String({ minLength: 1 })),
    /** Boot continues when the file cannot be opened; statements retry opening it and fail with `db.unavailable`. */
    optional: Type.Boolean({ default: false }),
    /** How long a statement waits for another connection's lock before failing with `db.timeout`. */
    busyTimeoutMs: Type.Integer({ minimum: 0, default: 5000 }),
    /** `PRAGMA foreign_keys` (SQLite's default is off; ours is on, like every other SQL database). */
    foreignKeys: Type.Boolean({ default: true }),
    /** `PRAGMA synchronous`: `normal` is durable across application crashes in WAL mode, `full` across power loss. */
    synchronous: Type.Union([Type.Literal('off'), Type.Literal('normal'), Type.Literal('full')], { default: 'normal' }),
  },
  { additionalProperties: false },
);
export type SqliteDeclaration = Static<typeof SqliteDeclaration>;

export interface QueryResult<R> {
  rows: R[];
  /** Rows returned or changed. */
  rowCount: number;
}

/** What `tx(fn)` hands to `fn`: statements inside the transaction. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

export interface SqliteStats extends OpStatsSnapshot {
  driver: 'sqlite';
  alias: string;
  url: string;
  transactions: number;
  rollbacks: number;
}

export const MEMORY = ':memory:';

/**
 * Where a declaration's database lives: `:memory:` or an absolute file path. Relative paths are
 * relative to the project directory. Another scheme (a server URL given to the wrong driver) stops boot.
 */
export function sqliteLocation(alias: string, url: string | undefined, projectDir: string): string {
  if (!url) return resolve(projectDir, '.mega', 'sqlite', `${alias}.db`);
  let rest = url;
  if (/^(sqlite3?|file):/i.test(rest)) rest = rest.replace(/^(sqlite3?|file):(\/\/)?/i, '');
  else if (rest !== 'memory://' && /^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) {
    throw new ConfigError(
      'adapter.invalid_url',
      `services.dbs.${alias}.url: SQLite takes sqlite:<path>, a path or :memory:, not "${redactUrl(url)}"`,
      { details: { kind: 'dbs', alias, url: redactUrl(url) } },
    );
  }
  if (rest === MEMORY || rest === 'memory://' || rest === '') return MEMORY;
  return isAbsolute(rest) ? rest : resolve(projectDir, rest);
}

/** Extended result codes we name (https://sqlite.org/rescode.html); others are named by their primary code. */
const CODE_NAMES: Record<number, string> = {
  1: 'SQLITE_ERROR',
  5: 'SQLITE_BUSY',
  6: 'SQLITE_LOCKED',
  8: 'SQLITE_READONLY',
  10: 'SQLITE_IOERR',
  11: 'SQLITE_CORRUPT',
  13: 'SQLITE_FULL',
  14: 'SQLITE_CANTOPEN',
  19: 'SQLITE_CONSTRAINT',
  26: 'SQLITE_NOTADB',
  275: 'SQLITE_CONSTRAINT_CHECK',
  517: 'SQLITE_BUSY_SNAPSHOT',
  787: 'SQLITE_CONSTRAINT_FOREIGNKEY',
  1299: 'SQLITE_CONSTRAINT_NOTNULL',
  1555: 'SQLITE_CONSTRAINT_PRIMARYKEY',
  2067: 'SQLITE_CONSTRAINT_UNIQUE',
};
/** Primary codes meaning "the database file cannot serve", not "your SQL is wrong". */
const UNAVAILABLE_CODES = new Set([8, 10, 11, 13, 14, 26]);

export class SqliteDb implements Queryable, Adapter, SqlDb {
  readonly alias: string;
  readonly dialect = 'sqlite' as const;
  readonly driver = 'sqlite' as const;
  /** The file path, or `:memory:`. */
  readonly url: string;
  readonly #decl: SqliteDeclaration;
  readonly #log: Logger;
  readonly #stats = new OpStats();
  /** The `tracing` service when @mega/tracing is loaded: a client span per statement. */
  readonly #tracer: MegaTracer | undefined;
  #db: DatabaseSync | undefined;
  #kysely: Kysely<AnyTables> | undefined;
  #retrying = false;
  #transactions = 0;
  #rollbacks = 0;

  constructor(alias: string, declaration: ServiceDeclaration, projectDir: string, log: Logger, tracer?: MegaTracer) {
    this.alias = alias;
    this.#tracer = tracer;
    this.#decl = serviceOptions('dbs', alias, declaration, SqliteDeclaration);
    this.#log = log;
    this.url = sqliteLocation(alias, this.#decl.url, projectDir);
    // Each worker of `mega start --workers N` would get its own empty in-memory database.
    if (this.url === MEMORY && process.env.MEGA_WORKER_SLOT !== undefined) {
      throw new MegaError(
        'db.embedded_in_use',
        `db "${alias}": an in-memory SQLite database cannot serve mega start --workers (each worker would have its own); give it a file (url: 'sqlite:./data/app.db') or start without --workers.`,
        { details: { alias, url: this.url, reason: 'workers' } },
      );
    }
  }

  /** The `node:sqlite` DatabaseSync. */
  get native(): DatabaseSync {
    if (!this.#db?.isOpen)
      throw new UnavailableError('db.unavailable', `db "${this.alias}" is not open (boot has not run or it was closed)`);
    return this.#db;
  }

  async connect(): Promise<void> {
    if (this.#db?.isOpen) return;
    const { DatabaseSync } = await import('node:sqlite');
    let db: DatabaseSync | undefined;
    try {
      if (this.url !== MEMORY && !existsSync(this.url)) {
        mkdirSync(dirname(this.url), { recursive: true });
        this.#log.info(`db "${this.alias}": creating the SQLite database ${this.url}`);
      }
      db = new DatabaseSync(this.url);
      // busy_timeout first: switching a fresh file to WAL takes an exclusive lock, and a second
      // process opening it at the same moment must wait for it instead of failing (9 of 30 racing
      // opens failed the other way round).
      db.exec(`pragma busy_timeout = ${this.#decl.busyTimeoutMs}`);
      if (this.url !== MEMORY) db.exec('pragma journal_mode = wal');
      db.exec(`pragma foreign_keys = ${this.#decl.foreignKeys ? 'on' : 'off'}`);
      db.exec(`pragma synchronous = ${this.#decl.synchronous}`);
      db.prepare('select 1').get();
    } catch (error) {
      if (db?.isOpen) db.close();
      throw new UnavailableError('db.unavailable', `db "${this.alias}" cannot open ${this.url}: ${redactText((error as Error).message)}`, {
        details: { alias: this.alias, url: this.url, driver: this.driver },
        cause: error,
      });
    }
    this.#db = db;
    this.#retrying = false;
  }

  /** After an optional alias failed to open at boot: every statement tries to open it first. */
  retry(): void {
    this.#retrying = true;
  }

  async close(): Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    // Not destroyed through Kysely: this adapter owns the database and closes it here.
    this.#kysely = undefined;
    if (db?.isOpen) db.close();
  }

  /**
   * The typed query builder over this adapter's connection (node:sqlite adapted to Kysely's
   * SqliteDialect; write transactions BEGIN IMMEDIATE). Errors are the driver's own: pass them
   * through {@link toMegaError}.
   */
  kysely<DB extends AnyTables = AnyTables>(): Kysely<DB> {
    if (!this.#kysely) {
      const tracer = this.#tracer;
      // Every statement (query(), tx(), kysely(): all go through Kysely) passes Kysely's log hook:
      // stats, and a client span when it ran inside a recorded trace.
      const log = (event: LogEvent) => {
        this.#stats.record(event.queryDurationMillis, event.level === 'error');
        if (tracer?.recording()) {
          traceStatement(
            tracer,
            'sqlite',
            this.alias,
            event.query.sql,
            event.queryDurationMillis,
            event.level === 'error' ? event.error : undefined,
          );
        }
      };
      const database = async () => {
        if (this.#retrying) await this.connect();
        return kyselyDatabase(this.native);
      };
      this.#kysely = new Kysely<AnyTables>({ dialect: new NodeSqliteDialect({ database }), log });
    }
    return this.#kysely as unknown as Kysely<DB>;
  }

  /** A driver error as a typed MegaError; see the README's error table. */
  toMegaError(error: unknown): MegaError {
    return this.#error(error, undefined);
  }

  /** Runs one statement (`?` placeholders). */
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#mapped(sql, () => run<R>(this.kysely(), sql, params));
  }

  /** Runs several statements separated by `;` (no parameters): schema scripts. */
  async exec(sql: string): Promise<void> {
    await this.#mapped(sql, () =>
      this.kysely()
        .connection()
        .execute(async () => {
          const started = performance.now();
          try {
            this.native.exec(sql);
            this.#stats.record(performance.now() - started, false);
            if (this.#tracer?.recording()) traceStatement(this.#tracer, 'sqlite', this.alias, sql, performance.now() - started);
          } catch (error) {
            this.#stats.record(performance.now() - started, true);
            if (this.#tracer?.recording()) traceStatement(this.#tracer, 'sqlite', this.alias, sql, performance.now() - started, error);
            throw error;
          }
        }),
    );
  }

  /** Runs `fn` in a transaction (BEGIN IMMEDIATE): commit when it resolves, rollback (and rethrow) when it throws. */
  async tx<T>(fn: (db: Queryable) => Promise<T>): Promise<T> {
    this.#transactions++;
    try {
      return await this.kysely()
        .transaction()
        .execute((trx) =>
          fn({ query: <R>(sql: string, params?: readonly unknown[]) => this.#mapped(sql, () => run<R>(trx, sql, params)) }),
        );
    } catch (error) {
      this.#rollbacks++;
      // BEGIN/COMMIT failing is the driver's (mapped); what `fn` threw is rethrown as it is.
      throw isDriverError(error) ? this.#error(error, undefined) : error;
    }
  }

  /** Readiness: `select 1` answered. */
  async check(): Promise<void> {
    await this.query('select 1');
  }

  stats(): SqliteStats {
    return {
      driver: this.driver,
      alias: this.alias,
      url: this.url,
      transactions: this.#transactions,
      rollbacks: this.#rollbacks,
      ...this.#stats.snapshot(),
    };
  }

  #mapped<T>(sql: string, fn: () => Promise<T>): Promise<T> {
    return fn().catch((error: unknown) => {
      throw this.#error(error, sql);
    });
  }

  #error(error: unknown, sql: string | undefined): MegaError {
    if (isMegaError(error)) return error;
    const e = error as Error & { code?: string; errcode?: number };
    const ext = typeof e.errcode === 'number' ? e.errcode : undefined;
    const primary = ext === undefined ? undefined : ext & 0xff;
    const code = ext === undefined ? undefined : (CODE_NAMES[ext] ?? CODE_NAMES[primary as number] ?? `SQLITE_${ext}`);
    const statement = sql === undefined ? undefined : sql.length > 200 ? `${sql.slice(0, 200)}...` : sql;
    const where = { alias: this.alias, ...(code ? { code } : {}), ...(statement === undefined ? {} : { statement }) };
    // "UNIQUE constraint failed: users.email, users.org": the table and columns, never the values.
    const failed = /constraint failed: (.+)$/.exec(e.message)?.[1];
    const columns = failed?.split(',').map((c) => c.trim());
    const names = columns?.[0]?.includes('.') ? { table: columns[0].split('.')[0], columns: columns.map((c) => c.split('.').pop()) } : {};
    const message = `db "${this.alias}": ${redactText(e.message)}`;
    if (ext === 2067 || ext === 1555) return new ConflictError('db.conflict', message, { details: { ...where, ...names }, cause: error });
    if (ext === 787) return new ConflictError('db.constraint', message, { details: where, cause: error });
    if (primary === 5 || primary === 6) {
      return new MegaError('db.timeout', `${message} (waited ${this.#decl.busyTimeoutMs} ms for a lock)`, { details: where, cause: error });
    }
    if ((primary !== undefined && UNAVAILABLE_CODES.has(primary)) || e.code === 'ERR_INVALID_STATE') {
      return new UnavailableError('db.unavailable', `db "${this.alias}" (${this.url}) is unavailable: ${redactText(e.message)}`, {
        details: { alias: this.alias, url: this.url, ...(code ? { code } : {}) },
        cause: error,
      });
    }
    return new MegaError('db.query_failed', message, { details: { ...where, ...names }, cause: error });
  }
}

function isDriverError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === 'ERR_SQLITE_ERROR' || code === 'ERR_INVALID_STATE';
}

async function run<R>(db: Kysely<AnyTables>, sql: string, params: readonly unknown[] | undefined): Promise<QueryResult<R>> {
  const res = await db.executeQuery<R>(CompiledQuery.raw(sql, params ? [...params] : []));
  return { rows: res.rows, rowCount: res.rows.length || Number(res.numAffectedRows ?? 0) };
}
