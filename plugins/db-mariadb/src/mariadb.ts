/**
 * One MariaDB (or MySQL) database per alias: a `mysql2` pool, which is also what Kysely's
 * MysqlDialect drives, so the raw API and the query builder share connections and settings.
 */
import type { Adapter, AnyTables, MegaTracer, OpStatsSnapshot, SqlDb, SqlResult, SqlStatement } from '@mega/adapters';
import { errorSummary, OpStats, parseServiceUrl, redactText, redactUrl, serviceOptions, sqlSpan, traceStatement } from '@mega/adapters';
import type { Logger, ServiceDeclaration, Static } from '@mega/kernel';
import { ConflictError, isMegaError, MegaError, Type, UnavailableError, ValidationError, within } from '@mega/kernel';
import type { LogEvent, MysqlPool } from 'kysely';
import { Kysely, MysqlDialect } from 'kysely';
import type { Pool, PoolConnection, PoolOptions, ResultSetHeader } from 'mysql2';
import mysql from 'mysql2';

export const MARIADB_DRIVERS = ['mariadb', 'mysql'] as const;

/** `services.dbs.<alias>` served by this plugin: the one source of its type and defaults. */
export const MariadbDeclaration = Type.Object(
  {
    driver: Type.Union(MARIADB_DRIVERS.map((d) => Type.Literal(d))),
    /** `mysql://user:pass@host:port/db` (or `mariadb://`). */
    url: Type.String({ minLength: 1 }),
    /** Boot continues when the server is down (statements fail with `db.unavailable` until it answers). */
    optional: Type.Boolean({ default: false }),
    /** Pool size. */
    max: Type.Integer({ minimum: 1, default: 10 }),
    /** Server-side statement timeout (MariaDB `max_statement_time`, MySQL `max_execution_time`); 0: none. */
    statementTimeoutMs: Type.Integer({ minimum: 0, default: 30_000 }),
    /** Connect timeout per connection (and for the boot check). */
    connectTimeoutMs: Type.Integer({ minimum: 1, default: 5000 }),
    /** Idle connections are closed after this. */
    idleTimeoutMs: Type.Integer({ minimum: 0, default: 10_000 }),
    /** Extra `mysql2` pool options, passed through. */
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type MariadbDeclaration = Static<typeof MariadbDeclaration>;

export interface QueryResult<R> {
  rows: R[];
  /** Rows returned or affected. */
  rowCount: number;
  /** AUTO_INCREMENT id of an insert (0 when none). */
  insertId?: number;
}

/** What `tx(fn)` hands to `fn`: statements on the transaction's connection. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

export interface MariadbStats extends OpStatsSnapshot {
  driver: 'mariadb';
  alias: string;
  url: string;
  transactions: number;
  rollbacks: number;
}

/** Error codes meaning "the connection or server is gone", not "your SQL is wrong". */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ER_CON_COUNT_ERROR',
  'ER_SERVER_SHUTDOWN',
  'ER_ACCESS_DENIED_ERROR',
  'ER_BAD_DB_ERROR',
  'ER_CONNECTION_KILLED',
]);
/** 1969 MariaDB max_statement_time, 3024 MySQL max_execution_time, 1205 lock wait timeout. */
const TIMEOUT_ERRNOS = new Set([1969, 3024, 1205]);

type DriverError = Error & { code?: string; errno?: number; sqlState?: string; fatal?: boolean; sql?: string; sqlMessage?: string };

export class MariadbDb implements Queryable, Adapter, SqlDb {
  readonly alias: string;
  readonly dialect = 'mysql' as const;
  readonly driver = 'mariadb' as const;
  /** The URL with its password masked. */
  readonly url: string;
  readonly #decl: MariadbDeclaration;
  readonly #log: Logger;
  readonly #stats = new OpStats();
  readonly #config: PoolOptions;
  /** The `tracing` service when @mega/tracing is loaded: a client span per statement. */
  readonly #tracer: MegaTracer | undefined;
  #pool: Pool | undefined;
  #kysely: Kysely<AnyTables> | undefined;
  #transactions = 0;
  #rollbacks = 0;

  constructor(alias: string, declaration: ServiceDeclaration, log: Logger, tracer?: MegaTracer) {
    this.alias = alias;
    this.#tracer = tracer;
    const decl = serviceOptions('dbs', alias, declaration, MariadbDeclaration);
    this.#decl = decl;
    this.#log = log;
    const url = parseServiceUrl('dbs', alias, decl.url, ['mysql:', 'mariadb:']);
    this.url = redactUrl(decl.url);
    this.#config = {
      host: url.hostname || '127.0.0.1',
      port: url.port ? Number(url.port) : 3306,
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: decodeURIComponent(url.pathname.replace(/^\//, '')) || undefined,
      connectionLimit: decl.max,
      connectTimeout: decl.connectTimeoutMs,
      idleTimeout: decl.idleTimeoutMs,
      maxIdle: decl.max,
      waitForConnections: true,
      enableKeepAlive: true,
      charset: 'utf8mb4_unicode_ci',
      // Dates in UTC; BIGINT and DECIMAL as strings (as `pg` returns int8 and numeric): same values for the same SQL.
      timezone: 'Z',
      supportBigNumbers: true,
      bigNumberStrings: true,
      ...(decl.options as PoolOptions | undefined),
    };
    this.#pool = this.#makePool();
  }

  #makePool(): Pool {
    const pool = mysql.createPool(this.#config);
    const ms = this.#decl.statementTimeoutMs;
    pool.on('connection', (conn: PoolConnection) => {
      // Queued before the first statement of the connection's borrower. Each server knows one of the
      // two variables; the other's "unknown system variable" is expected and ignored.
      if (ms > 0) {
        conn.query(`set session max_statement_time = ${ms / 1000}`, () => undefined);
        conn.query(`set session max_execution_time = ${ms}`, () => undefined);
      }
    });
    return pool;
  }

  /** The `mysql2` pool (callback API; `.promise()` for promises). */
  get native(): Pool {
    if (!this.#pool) throw new UnavailableError('db.unavailable', `db "${this.alias}" is closed`);
    return this.#pool;
  }

  async connect(): Promise<void> {
    const timeoutMs = this.#decl.connectTimeoutMs;
    try {
      this.#pool ??= this.#makePool();
      await within(this.#raw('select 1'), timeoutMs, () => new Error(`no answer within ${timeoutMs} ms`));
    } catch (error) {
      throw new UnavailableError('db.unavailable', `db "${this.alias}" cannot connect to ${this.url}: ${safeMessage(error)}`, {
        details: { alias: this.alias, url: this.url, driver: this.driver, ...codeOf(error) },
      });
    }
  }

  async close(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    // Not destroyed through Kysely: that would end the pool, which this adapter owns and ends here.
    this.#kysely = undefined;
    if (pool) await new Promise<void>((resolve) => pool.end(() => resolve()));
  }

  /**
   * The typed query builder over this adapter's pool (Kysely's MysqlDialect). Errors are the
   * driver's own: pass them through {@link toMegaError}.
   */
  kysely<DB extends AnyTables = AnyTables>(): Kysely<DB> {
    if (!this.#kysely) {
      const tracer = this.#tracer;
      const system = this.#decl.driver;
      // Kysely's log hook sees every statement it runs (transactions' BEGIN/COMMIT included): stats,
      // and a client span when the statement ran inside a recorded trace.
      const log = (event: LogEvent) => {
        this.#stats.record(event.queryDurationMillis, event.level === 'error');
        if (tracer?.recording()) {
          traceStatement(
            tracer,
            system,
            this.alias,
            event.query.sql,
            event.queryDurationMillis,
            event.level === 'error' ? event.error : undefined,
          );
        }
      };
      // A function: resolved when Kysely first needs it, after connect() or a reconnect.
      const pool = async () => this.native as unknown as MysqlPool;
      this.#kysely = new Kysely<AnyTables>({ dialect: new MysqlDialect({ pool }), log });
    }
    return this.#kysely as unknown as Kysely<DB>;
  }

  /** A driver error as a typed MegaError; see the README's error table. */
  toMegaError(error: unknown): MegaError {
    return this.#error(error, undefined);
  }

  /** SqlDb's fast path for statements Kysely compiled (@mega/models outside transactions): `query()` without Kysely's executor. */
  execute<R = Record<string, unknown>>(statement: SqlStatement): Promise<SqlResult<R>> {
    const { sql, parameters } = statement;
    return this.#traced(sql, () => this.#pooled(sql, parameters, toSqlResult<R>));
  }

  /**
   * Runs one statement (`?` placeholders). Outside a transaction a statement whose pooled connection
   * turned out to be dead is retried once on a fresh one: it never reached a live server.
   */
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#traced(sql, () => this.#pooled(sql, params, toResult<R>));
  }

  /**
   * One statement on the pool with this adapter's stats, error mapping and the one retry (see
   * `query()`): the driver's callbacks settle one promise, no async layers on the way (each showed
   * up as CPU per statement in `npm run bench:models`).
   */
  #pooled<T>(sql: string, params: readonly unknown[] | undefined, shape: (result: unknown) => T): Promise<T> {
    const started = performance.now();
    return new Promise<T>((resolve, reject) => {
      const done = (error: unknown, result: unknown, retried: boolean): void => {
        if (!error) {
          try {
            const value = shape(result);
            this.#stats.record(performance.now() - started, false);
            resolve(value);
            return;
          } catch (shapeError) {
            error = shapeError;
          }
        }
        if (!retried && isConnectionLoss(error)) {
          this.#log.debug({ err: errorSummary(error), alias: this.alias }, 'connection lost before the statement ran; retrying once');
          this.#send(sql, params, (e, r) => done(e, r, true));
        } else {
          this.#stats.record(performance.now() - started, true);
          reject(this.#error(error, sql));
        }
      };
      this.#send(sql, params, (e, r) => done(e, r, false));
    });
  }

  #send(sql: string, params: readonly unknown[] | undefined, cb: (error: unknown, result: unknown) => void): void {
    try {
      this.native.query(sql, params ? [...params] : [], cb);
    } catch (error) {
      // Not connected (boot has not run, or closed): the adapter's own db.unavailable, as it is.
      cb(error, undefined);
    }
  }

  /** Runs several statements separated by `;` (no parameters), on a connection of its own: schema scripts. */
  async exec(sql: string): Promise<void> {
    await this.#timed(sql, async () => {
      const conn = mysql.createConnection({ ...this.#config, multipleStatements: true });
      try {
        await new Promise<void>((resolve, reject) => conn.query(sql, (error) => (error ? reject(error) : resolve())));
      } finally {
        conn.destroy();
      }
      return undefined;
    });
  }

  /** Runs `fn` in a transaction: commit when it resolves, rollback (and rethrow) when it throws. */
  async tx<T>(fn: (db: Queryable) => Promise<T>): Promise<T> {
    this.#transactions++;
    let conn: PoolConnection;
    try {
      conn = await new Promise<PoolConnection>((resolve, reject) => this.native.getConnection((e, c) => (e ? reject(e) : resolve(c))));
    } catch (error) {
      this.#rollbacks++;
      throw this.#error(error, 'BEGIN');
    }
    const on = <R>(sql: string, params?: readonly unknown[]) => this.#timed(sql, () => queryOn<R>(conn, sql, params));
    let broken = false;
    try {
      await on('start transaction');
      const value = await fn({ query: on });
      await on('commit');
      return value;
    } catch (error) {
      this.#rollbacks++;
      try {
        await queryOn(conn, 'rollback');
      } catch {
        broken = true;
      }
      throw error;
    } finally {
      if (broken) conn.destroy();
      else conn.release();
    }
  }

  /** Readiness: `select 1` answered. */
  async check(): Promise<void> {
    await this.query('select 1');
  }

  stats(): MariadbStats {
    return {
      driver: this.driver,
      alias: this.alias,
      url: this.url,
      transactions: this.#transactions,
      rollbacks: this.#rollbacks,
      ...this.#stats.snapshot(),
    };
  }

  #raw<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return new Promise((resolve, reject) =>
      this.native.query(sql, params ? [...params] : [], (error, result) => (error ? reject(error) : resolve(toResult<R>(result)))),
    );
  }

  /** `run` with this adapter's stats and error mapping, in a client span inside a recorded trace. */
  #timed<T>(sql: string, run: () => Promise<T>): Promise<T> {
    return this.#traced(sql, () =>
      this.#stats.time(run).catch((error: unknown) => {
        throw this.#error(error, sql);
      }),
    );
  }

  /** `run` in a client span inside a recorded trace (#pooled has the stats and error mapping of its own). */
  #traced<T>(sql: string, run: () => Promise<T>): Promise<T> {
    // Only inside a recorded trace: a sampled-out request (or none) builds no attributes.
    if (this.#tracer?.recording()) {
      const { name, attributes } = sqlSpan(this.#decl.driver, this.alias, sql);
      return this.#tracer.run(name, 'client', attributes, run);
    }
    return run();
  }

  #error(error: unknown, sql: string | undefined): MegaError {
    if (isMegaError(error)) return error;
    const e = error as DriverError;
    const statement = sql === undefined ? undefined : sql.length > 200 ? `${sql.slice(0, 200)}...` : sql;
    const where = { alias: this.alias, ...codeOf(error), ...(statement === undefined ? {} : { statement }) };
    if (e.errno === 1062) {
      // "Duplicate entry '<value>' for key '<key>'": name the key, never the value.
      const key = /for key '([^']+)'/.exec(e.message)?.[1];
      return new ConflictError('db.conflict', `db "${this.alias}": duplicate entry for unique key ${key ? `'${key}'` : ''}`.trimEnd(), {
        details: { ...where, ...(key ? { key } : {}) },
      });
    }
    if (e.errno === 1451 || e.errno === 1452) {
      const constraint = /CONSTRAINT `([^`]+)`/.exec(e.message)?.[1];
      const message =
        e.errno === 1451 ? 'a row still referenced by a foreign key cannot be deleted or changed' : 'no referenced row for a foreign key';
      return new ConflictError('db.constraint', `db "${this.alias}": ${message}${constraint ? ` (${constraint})` : ''}`, {
        details: { ...where, ...(constraint ? { constraint } : {}) },
      });
    }
    if (e.sqlState?.startsWith('22')) {
      // SQLSTATE class 22 (data too long, out of range, bad value for the type): the caller's input.
      return new ValidationError('db.invalid_value', `db "${this.alias}": ${safeMessage(e)}`, { details: where });
    }
    if (e.errno !== undefined && TIMEOUT_ERRNOS.has(e.errno)) {
      return new MegaError('db.timeout', `db "${this.alias}": ${safeMessage(e)}`, { details: where });
    }
    if (
      (e.code && UNAVAILABLE_CODES.has(e.code)) ||
      e.fatal === true ||
      isConnectionLoss(error) ||
      /pool is closed|closed state/i.test(e.message)
    ) {
      return new UnavailableError('db.unavailable', `db "${this.alias}" (${this.url}) is unavailable: ${safeMessage(e)}`, {
        details: { alias: this.alias, url: this.url, ...codeOf(error) },
        cause: stripped(e),
      });
    }
    return new MegaError('db.query_failed', `db "${this.alias}": ${safeMessage(e)}`, { details: where });
  }
}

function toResult<R>(result: unknown): QueryResult<R> {
  if (Array.isArray(result)) return { rows: result as R[], rowCount: result.length };
  const ok = result as ResultSetHeader;
  return { rows: [], rowCount: ok.affectedRows ?? 0, insertId: ok.insertId };
}

function toSqlResult<R>(result: unknown): SqlResult<R> {
  if (Array.isArray(result)) return { rows: result as R[], numAffectedRows: BigInt(result.length) };
  const ok = result as ResultSetHeader;
  const affected = BigInt(ok.affectedRows ?? 0);
  return ok.insertId === undefined
    ? { rows: [], numAffectedRows: affected }
    : { rows: [], numAffectedRows: affected, insertId: BigInt(ok.insertId) };
}

function queryOn<R>(conn: PoolConnection, sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
  return new Promise((resolve, reject) =>
    conn.query(sql, params ? [...params] : [], (error, result) => (error ? reject(error) : resolve(toResult<R>(result)))),
  );
}

function codeOf(error: unknown): { code?: string; errno?: number; sqlState?: string } {
  const e = error as DriverError | undefined;
  return {
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
    ...(typeof e?.errno === 'number' && e.errno > 0 ? { errno: e.errno } : {}),
    ...(typeof e?.sqlState === 'string' ? { sqlState: e.sqlState } : {}),
  };
}

/**
 * The driver's message without what it may quote from the statement: mysql2 binds parameters on the
 * client, so server messages ("Incorrect integer value: 'x'", "near '...'") can carry bound values.
 * Quoted literals become '?'; URLs are redacted.
 */
function safeMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return redactText(message).replace(/'(?:[^'\\]|\\.)*'/g, "'?'");
}

/** A connection error kept as `cause` without the statement text mysql2 attaches (`sql`, values included). */
function stripped(e: DriverError): DriverError {
  delete e.sql;
  delete e.sqlMessage;
  return e;
}

/** The pooled connection died under us (not a SQL error): safe to retry a statement outside a transaction. */
function isConnectionLoss(error: unknown): boolean {
  const code = (error as DriverError | undefined)?.code;
  return code === 'PROTOCOL_CONNECTION_LOST' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ER_CONNECTION_KILLED';
}
