/**
 * One PostgreSQL database per alias: a `pg` pool against a server, or embedded PGlite (same SQL,
 * same result shapes) when no server URL is configured.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import type { Adapter, AnyTables, MegaTracer, OpStatsSnapshot, SqlDb, SqlResult, SqlStatement } from '@mega/adapters';
import { errorSummary, OpStats, parseServiceUrl, redactText, redactUrl, serviceOptions, sqlSpan, traceStatement } from '@mega/adapters';
import type { Logger, ServiceDeclaration, Static } from '@mega/kernel';
import { ConfigError, ConflictError, isMegaError, MegaError, Type, UnavailableError, ValidationError, within } from '@mega/kernel';
import type { LogEvent, PostgresPool, PostgresPoolClient } from 'kysely';
import { Kysely, PGliteDialect, PostgresDialect } from 'kysely';
import type { PoolClient, PoolConfig } from 'pg';
import pg from 'pg';
import { DataDirLock, refuseInWorker } from './lock-file.js';

export const POSTGRES_DRIVERS = ['postgres', 'postgresql', 'pg', 'pglite'] as const;

/** `services.dbs.<alias>` served by this plugin: the one source of its type and defaults. */
export const PostgresDeclaration = Type.Object(
  {
    /** `postgres` (alias `postgresql`, `pg`) with a URL uses a pool; `pglite`, or no URL, runs PGlite. */
    driver: Type.Union(POSTGRES_DRIVERS.map((d) => Type.Literal(d))),
    /** `postgres://user:pass@host:port/db`; PGlite: `memory://` or a directory (default `.mega/pglite/<alias>`). */
    url: Type.Optional(Type.String({ minLength: 1 })),
    /** Boot continues when the server is down (queries fail with `db.unavailable` until it answers). */
    optional: Type.Boolean({ default: false }),
    /** Pool size. */
    max: Type.Integer({ minimum: 1, default: 10 }),
    /** Server-side statement timeout (not enforced by PGlite: it runs in this thread). */
    statementTimeoutMs: Type.Integer({ minimum: 0, default: 30_000 }),
    /** Connect timeout per connection (and for the boot check). */
    connectTimeoutMs: Type.Integer({ minimum: 1, default: 5000 }),
    /** Idle connections are closed after this. */
    idleTimeoutMs: Type.Integer({ minimum: 0, default: 10_000 }),
    /** Extra `pg.Pool` options, passed through. */
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type PostgresDeclaration = Static<typeof PostgresDeclaration>;

export interface QueryResult<R> {
  rows: R[];
  /** Rows returned or affected. */
  rowCount: number;
}

/** What `tx(fn)` hands to `fn`: queries on the transaction's connection. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

export interface DbStats extends OpStatsSnapshot {
  driver: 'postgres' | 'pglite';
  alias: string;
  url: string | undefined;
  transactions: number;
  rollbacks: number;
  pool?: { total: number; idle: number; waiting: number };
}

/** SQLSTATEs meaning "the connection or server is gone", not "your SQL is wrong". */
const UNAVAILABLE_STATES = /^(08|53|57P0[1-4]|58)/;

export class PostgresDb implements Queryable, Adapter, SqlDb {
  readonly alias: string;
  readonly dialect = 'postgres' as const;
  readonly driver: 'postgres' | 'pglite';
  /** The URL with its password masked (PGlite: `memory://` or the data directory). */
  readonly url: string | undefined;
  readonly #decl: PostgresDeclaration;
  readonly #log: Logger;
  readonly #stats = new OpStats();
  readonly #tracer: MegaTracer | undefined;
  readonly #dataDir: string | undefined;
  /**
   * The client-side bound of a statement (pg's `query_timeout`, statement timeout + 2 s; 0: none).
   * Not given to the pool: its per-statement timer inside pg made a pooled statement cost 5-8 µs more
   * CPU (young-generation GCs promoting most objects; `npm run bench:models`), so pooled statements
   * get it from {@link #watch} and statements on a checked-out connection per query ({@link #bounded}).
   */
  readonly #readTimeoutMs: number = 0;
  /**
   * One record per pooled connection (kept on the connection, dropped when it ends): the statement it
   * runs, since when. One timer checks them against the bound, every quarter of it (at most 1 s).
   * Measured (`npm run bench:models -- --ladder`, GC pauses): a timer per statement, or a Map of the
   * statements in flight, made young-generation GCs promote most objects, as pg's own timer does;
   * records reused per connection do not.
   */
  readonly #watched = new Set<Watched>();
  #watchdog: NodeJS.Timeout | undefined;
  #pool: pg.Pool | undefined;
  #lite: PGlite | undefined;
  #dirLock: DataDirLock | undefined;
  #kysely: Kysely<AnyTables> | undefined;
  #transactions = 0;
  #rollbacks = 0;

  /** `tracer`: the `tracing` service when @mega/tracing is loaded (a client span per query). */
  constructor(alias: string, declaration: ServiceDeclaration, projectDir: string, log: Logger, tracer?: MegaTracer) {
    this.alias = alias;
    this.#tracer = tracer;
    checkPostgresDeclaration(alias, declaration);
    const decl = serviceOptions('dbs', alias, declaration, PostgresDeclaration);
    this.#decl = decl;
    this.#log = log;
    const url = decl.url;
    const embedded = decl.driver === 'pglite' || !url || url.startsWith('memory://') || url.startsWith('file:');
    this.driver = embedded ? 'pglite' : 'postgres';
    if (embedded) {
      if (url?.startsWith('memory://')) this.#dataDir = 'memory://';
      else {
        const dir = url ? url.replace(/^file:(\/\/)?/, '') : join('.mega', 'pglite', alias);
        this.#dataDir = isAbsolute(dir) ? dir : resolve(projectDir, dir);
      }
      this.url = this.#dataDir;
      // Every worker of `mega start --workers N` would open its own copy: refuse before boot.
      refuseInWorker(alias, this.#dataDir);
    } else {
      parseServiceUrl('dbs', alias, url, ['postgres:', 'postgresql:']);
      this.url = redactUrl(url);
      const timeout = decl.statementTimeoutMs;
      const { query_timeout: readTimeout, ...options } = (decl.options ?? {}) as PoolConfig;
      // Client-side bound slightly above the server's, for a server that stops answering.
      this.#readTimeoutMs = readTimeout ?? timeout + 2000;
      this.#pool = new pg.Pool({
        connectionString: url,
        max: decl.max,
        connectionTimeoutMillis: decl.connectTimeoutMs,
        idleTimeoutMillis: decl.idleTimeoutMs,
        statement_timeout: timeout,
        application_name: `mega:${alias}`,
        ...options,
      });
      // An idle connection dying (server restart, pg_terminate_backend) must not crash the process;
      // the pool drops it and opens a new one on demand.
      // pg-pool hangs the whole client (secretKey, connection parameters) on the error as `err.client`:
      // log a redacted summary, never the object.
      this.#pool.on('error', (error) =>
        this.#log.warn({ err: errorSummary(error), alias }, `db "${alias}": idle connection lost (${redactText(error.message)})`),
      );
    }
  }

  /** The `pg.Pool` or the `PGlite` instance. */
  get native(): pg.Pool | PGlite {
    const native = this.#pool ?? this.#lite;
    if (!native) throw new UnavailableError('db.unavailable', `db "${this.alias}" is not connected (boot has not run or it was closed)`);
    return native;
  }

  async connect(): Promise<void> {
    const timeoutMs = this.#decl.connectTimeoutMs;
    try {
      if (this.#pool) {
        await within(this.#pool.query('select 1'), timeoutMs, () => new Error(`no answer within ${timeoutMs} ms`));
        return;
      }
      const { PGlite, types } = await import('@electric-sql/pglite');
      // The first boot runs initdb (seconds): announced, and timed once done.
      const firstInit = this.#dataDir !== 'memory://' && !existsSync(join(this.#dataDir as string, 'PG_VERSION'));
      const started = performance.now();
      if (this.#dataDir !== 'memory://') {
        if (firstInit)
          this.#log.info(`db "${this.alias}": initialising the embedded database in ${this.#dataDir} (first boot takes a few seconds)`);
        mkdirSync(this.#dataDir as string, { recursive: true });
        // One process per data directory: a second one would open its own copy and lose rows.
        this.#dirLock ??= DataDirLock.acquire(this.alias, this.#dataDir as string);
      }
      // int8 as a string, like pg: both drivers return the same values for the same SQL.
      this.#lite = await PGlite.create(this.#dataDir as string, { parsers: { [types.INT8]: (value: string) => value } });
      if (firstInit)
        this.#log.info(`db "${this.alias}": embedded database initialised in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (error) {
      if (isMegaError(error) && error.code === 'db.embedded_in_use') throw error;
      this.#dirLock?.release();
      this.#dirLock = undefined;
      throw new UnavailableError(
        'db.unavailable',
        `db "${this.alias}" cannot connect to ${this.url}: ${redactText((error as Error).message)}`,
        {
          details: { alias: this.alias, url: this.url, driver: this.driver },
          cause: error,
        },
      );
    }
  }

  /**
   * The typed query builder over this adapter's own connections: Kysely's PostgresDialect over the
   * pool (each checked-out connection guarded like `tx()`'s), or its PGliteDialect over the embedded
   * instance (one connection; a Kysely transaction holds PGlite's transaction lock, so `query()` and
   * `tx()` from elsewhere wait for it instead of running inside it). Errors are the drivers' own:
   * pass them through {@link toMegaError}.
   */
  kysely<DB extends AnyTables = AnyTables>(): Kysely<DB> {
    if (!this.#kysely) {
      const tracer = this.#tracer;
      // Kysely's log hook sees every statement it runs (transactions' BEGIN/COMMIT included): stats,
      // and a client span when the statement ran inside a recorded trace.
      const log = (event: LogEvent) => {
        this.#stats.record(event.queryDurationMillis, event.level === 'error');
        if (tracer?.recording()) {
          traceStatement(
            tracer,
            'postgresql',
            this.alias,
            event.query.sql,
            event.queryDurationMillis,
            event.level === 'error' ? event.error : undefined,
          );
        }
      };
      const dialect = this.#pool
        ? new PostgresDialect({ pool: guardedPool(this.#pool, this.#readTimeoutMs, (error) => this.#lostInTx(error)) })
        : new PGliteDialect({ pglite: () => this.native as PGlite });
      this.#kysely = new Kysely<AnyTables>({ dialect, log });
    }
    return this.#kysely as unknown as Kysely<DB>;
  }

  /**
   * SqlDb's fast path for statements Kysely compiled (@mega/models outside transactions): straight
   * through `query()` — stats, tracing, the one retry on a dead pooled connection, PGlite waiting for
   * an open Kysely transaction — without Kysely's executor layers.
   */
  execute<R = Record<string, unknown>>(statement: SqlStatement): Promise<SqlResult<R>> {
    const { sql, parameters } = statement;
    const pool = this.#pool;
    if (pool) return this.#traced(sql, () => this.#pooled(pool, sql, parameters, toSqlResult<R>));
    return this.query<R>(sql, parameters).then((res) => ({ rows: res.rows, numAffectedRows: BigInt(res.rowCount) }));
  }

  /** A driver error (from `kysely()` or `native`) as a typed MegaError; see the README's error table. */
  toMegaError(error: unknown): MegaError {
    return this.#error(error, undefined);
  }

  async close(): Promise<void> {
    const pool = this.#pool;
    const lite = this.#lite;
    this.#lite = undefined;
    // Not destroyed: Kysely would end the pool / close PGlite, which this adapter owns and closes below.
    this.#kysely = undefined;
    if (pool && !pool.ended) await pool.end();
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    try {
      if (lite && !lite.closed) await lite.close();
    } finally {
      this.#dirLock?.release();
      this.#dirLock = undefined;
    }
  }

  /**
   * Runs one statement. Outside a transaction a statement whose connection turned out to be dead
   * (terminated backend, server restart) is retried once on a fresh connection: it never reached a
   * live server, so it did not run.
   */
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    const pool = this.#pool;
    if (pool) return this.#traced(sql, () => this.#pooled(pool, sql, params, toResult<R>));
    return this.#timed(sql, async () => {
      const lite = this.native as PGlite;
      const res = await lite.query<R>(sql, params as unknown[]);
      return { rows: res.rows, rowCount: res.affectedRows || res.rows.length };
    });
  }

  /** Runs several statements separated by `;` (no parameters): schema scripts, migrations. */
  async exec(sql: string): Promise<void> {
    const pool = this.#pool;
    // Several statements give pg several results: none is wanted.
    if (pool) await this.#traced(sql, () => this.#pooled(pool, sql, undefined, () => undefined));
    else await this.#timed(sql, () => (this.native as PGlite).exec(sql));
  }

  /** Runs `fn` in a transaction: commit when it resolves, rollback (and rethrow) when it throws. */
  async tx<T>(fn: (db: Queryable) => Promise<T>): Promise<T> {
    this.#transactions++;
    if (!this.#pool) {
      try {
        return await (this.native as PGlite).transaction((t) =>
          fn({
            query: <R>(sql: string, params?: readonly unknown[]) =>
              this.#timed(sql, async () => {
                const res = await t.query<R>(sql, params as unknown[]);
                return { rows: res.rows, rowCount: res.affectedRows || res.rows.length };
              }),
          }),
        );
      } catch (error) {
        this.#rollbacks++;
        throw error;
      }
    }
    const client = await this.#begin(this.#pool);
    let broken: Error | undefined;
    // A checked-out client has no error listener of the pool's: without one, the connection dying
    // mid-transaction (server restart, terminated backend) is an unhandled 'error' event that ends
    // the process. Here it only marks the client broken; the pending or next query rejects, and the
    // transaction with it (db.unavailable).
    const onError = (error: Error) => {
      broken = error;
      this.#lostInTx(error);
    };
    client.on('error', onError);
    try {
      const value = await fn({
        query: <R>(sql: string, params?: readonly unknown[]) =>
          this.#timed(sql, async () => toResult<R>(await client.query(this.#bounded(sql, params)))),
      });
      await client.query(this.#bounded('COMMIT'));
      return value;
    } catch (error) {
      this.#rollbacks++;
      try {
        await client.query(this.#bounded('ROLLBACK'));
      } catch (rollbackError) {
        broken = rollbackError as Error;
      }
      throw isMegaError(error) ? error : this.#error(error, 'COMMIT');
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  /**
   * A connection with a transaction begun on it. A BEGIN that finds its connection dead (it died idle
   * in the pool) ran nothing, so the next connection is tried, up to the pool's size, as for statements.
   */
  async #begin(pool: pg.Pool): Promise<PoolClient> {
    for (let attempt = 0; ; attempt++) {
      let client: PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw this.#error(error, 'BEGIN');
      }
      const c = client as PoolClient & { [SERVED]?: true };
      const reused = c[SERVED] === true;
      // Until BEGIN answers, a connection error is this call's to handle, not the process's.
      let lost: Error | undefined;
      const onError = (error: Error) => {
        lost = error;
      };
      client.on('error', onError);
      try {
        await client.query(this.#bounded('BEGIN'));
        c[SERVED] = true;
        return client;
      } catch (error) {
        client.release((lost ?? error) as Error);
        if (!isConnectionLoss(error) || (attempt > 0 && (!reused || attempt > pool.options.max))) throw this.#error(error, 'BEGIN');
        this.#log.debug({ err: errorSummary(error), alias: this.alias }, 'connection lost before BEGIN ran; retrying');
      } finally {
        client.off('error', onError);
      }
    }
  }

  /** Readiness: `select 1` answered. */
  async check(): Promise<void> {
    await this.query('select 1');
  }

  stats(): DbStats {
    const pool = this.#pool;
    return {
      driver: this.driver,
      alias: this.alias,
      url: this.url,
      transactions: this.#transactions,
      rollbacks: this.#rollbacks,
      ...(pool ? { pool: { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount } } : {}),
      ...this.#stats.snapshot(),
    };
  }

  #lostInTx(error: Error): void {
    this.#log.warn(
      { err: errorSummary(error), alias: this.alias },
      `db "${this.alias}": connection lost during a transaction (${redactText(error.message)})`,
    );
  }

  /** A statement on a checked-out connection, with the client-side bound (pg's per-query `query_timeout`). */
  #bounded(text: string, values?: readonly unknown[]): pg.QueryConfig {
    return boundedQuery(text, values, this.#readTimeoutMs);
  }

  /**
   * One statement on a pooled connection, as `pg.Pool#query` runs it (check out, query, release; a
   * connection that failed a statement is destroyed), with this adapter's stats, error mapping, the
   * client-side bound (past it: pg's "Query read timeout", and the connection is destroyed, as pg's
   * `query_timeout` does) and the retry of a statement whose connection turned out to be dead
   * (terminated backend, server restart): it never reached a live server, so it did not run. A dead
   * connection that had served before (idle in the pool when the server dropped it, its error not read
   * yet) is retried on the next one, up to the pool's size, since every idle connection may be dead
   * at once; a dead fresh connection is retried once. Driver
   * callbacks settle one promise: no async layers on the way (`npm run bench:models`).
   */
  #pooled<T>(pool: pg.Pool, sql: string, params: readonly unknown[] | undefined, shape: (res: pg.QueryResult) => T): Promise<T> {
    const started = performance.now();
    return new Promise<T>((resolve, reject) => {
      let retries = 0;
      const done = (error: unknown, res: pg.QueryResult | undefined, reused: boolean): void => {
        if (error === undefined) {
          try {
            const value = shape(res as pg.QueryResult);
            this.#stats.record(performance.now() - started, false);
            resolve(value);
            return;
          } catch (shapeError) {
            // Not a result of one statement (`query()` given several): a failure, as in an async function.
            error = shapeError;
          }
        }
        if (isConnectionLoss(error) && (retries === 0 || (reused && retries <= pool.options.max))) {
          retries++;
          this.#log.debug({ err: errorSummary(error), alias: this.alias }, 'connection lost before the query ran; retrying');
          this.#send(pool, sql, params, done);
        } else {
          this.#stats.record(performance.now() - started, true);
          reject(this.#error(error, sql));
        }
      };
      this.#send(pool, sql, params, done);
    });
  }

  /**
   * `pg.Pool#query` with the client-side bound: check out, query, release (with the error when the
   * statement failed, which destroys the connection), `cb` called once. Past the bound the caller
   * gets pg's own "Query read timeout" and the connection is destroyed (the statement may still be
   * running on it), as pg's `query_timeout` under `pool.query` does.
   */
  #send(
    pool: pg.Pool,
    sql: string,
    params: readonly unknown[] | undefined,
    cb: (error: unknown, res: pg.QueryResult | undefined, reused: boolean) => void,
  ): void {
    pool.connect((connectError, client, release) => {
      if (connectError || !client) {
        cb(connectError ?? new Error('no connection'), undefined, false);
        return;
      }
      const c = client as PoolClient & { [SERVED]?: true };
      const reused = c[SERVED] === true;
      let settled = false;
      let watched: Watched | undefined;
      const finish = (error: Error | undefined, res?: pg.QueryResult) => {
        if (settled) return;
        settled = true;
        if (watched) watched.fail = undefined;
        client.removeListener('error', finish);
        if (!error) c[SERVED] = true;
        release(error);
        cb(error, res, reused);
      };
      if (this.#readTimeoutMs > 0) watched = this.#watch(client, finish);
      client.once('error', finish);
      client.query(sql, params as unknown[], (error: Error | null, res: pg.QueryResult) =>
        finish(error ?? undefined, error ? undefined : res),
      );
    });
  }

  /** Puts a pooled statement under the watchdog (started with the first one). */
  #watch(client: PoolClient, fail: (error: Error) => void): Watched {
    const c = client as PoolClient & { [WATCH]?: Watched };
    let watched = c[WATCH];
    if (!watched) {
      const w: Watched = { since: 0, fail: undefined };
      c[WATCH] = watched = w;
      this.#watched.add(w);
      client.once('end', () => this.#watched.delete(w));
    }
    watched.since = performance.now();
    watched.fail = fail;
    if (!this.#watchdog) {
      const bound = this.#readTimeoutMs;
      this.#watchdog = setInterval(
        () => {
          const now = performance.now();
          for (const w of this.#watched) if (w.fail && now - w.since >= bound) w.fail(new Error(READ_TIMEOUT));
        },
        Math.max(10, Math.min(1000, Math.floor(bound / 4))),
      );
      this.#watchdog.unref();
    }
    return watched;
  }

  /** `run` with this adapter's stats and error mapping, in a client span when tracing is on. */
  #timed<T>(sql: string, run: () => Promise<T>): Promise<T> {
    return this.#traced(sql, () => this.#time(sql, run));
  }

  /** `run` in a client span when @mega/tracing is loaded (one branch when it is not). */
  #traced<T>(sql: string, run: () => Promise<T>): Promise<T> {
    // Only inside a recorded trace: a sampled-out request builds no attributes.
    if (this.#tracer?.recording()) {
      const { name, attributes } = sqlSpan('postgresql', this.alias, sql);
      return this.#tracer.run(name, 'client', attributes, run);
    }
    return run();
  }

  #time<T>(sql: string, run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    return run().then(
      (value) => {
        this.#stats.record(performance.now() - started, false);
        return value;
      },
      (error: unknown) => {
        this.#stats.record(performance.now() - started, true);
        throw this.#error(error, sql);
      },
    );
  }

  #error(error: unknown, sql: string | undefined): MegaError {
    if (isMegaError(error)) return error;
    const e = error as Error & { code?: string; detail?: string; constraint?: string; table?: string; column?: string };
    const sqlState = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
    const statement = sql === undefined ? undefined : sql.length > 200 ? `${sql.slice(0, 200)}...` : sql;
    const where = { alias: this.alias, sqlState, ...(statement === undefined ? {} : { statement }) };
    // Class 23 (integrity violations): PostgreSQL's `detail` quotes the offending values
    // ("Key (email)=(ada@example.com) already exists"), so only the constraint, table and column go out.
    const names = {
      ...(e.constraint ? { constraint: e.constraint } : {}),
      ...(e.table ? { table: e.table } : {}),
      ...(e.column ? { column: e.column } : {}),
    };
    if (sqlState === '23505') {
      return new ConflictError('db.conflict', `db "${this.alias}": ${e.message}`, { details: { ...where, ...names }, cause: error });
    }
    if (sqlState === '23503') {
      return new ConflictError('db.constraint', `db "${this.alias}": ${e.message}`, { details: { ...where, ...names }, cause: error });
    }
    if (sqlState?.startsWith('22')) {
      // Class 22 (data exceptions): a value the column cannot hold (U+0000 in text, too long, out of
      // range, bad syntax for the type) is the caller's input, not a server fault. The message may
      // quote that value, so quoted literals are masked; `detail` and the driver error (as cause) are left out.
      const message = redactText(e.message).replace(/"(?:[^"\\]|\\.)*"/g, '"?"');
      return new ValidationError('db.invalid_value', `db "${this.alias}": ${message}`, { details: { ...where, ...names } });
    }
    if (sqlState === '57014') {
      return new MegaError('db.timeout', `db "${this.alias}": statement cancelled (statement timeout): ${e.message}`, {
        details: where,
        cause: error,
      });
    }
    if (!sqlState || UNAVAILABLE_STATES.test(sqlState)) {
      if (sqlState || isConnectionLoss(error) || /ECONN|ENOTFOUND|EHOSTUNREACH|timeout|terminat|closed|ended/i.test(e.message)) {
        return new UnavailableError('db.unavailable', `db "${this.alias}" (${this.url}) is unavailable: ${redactText(e.message)}`, {
          details: { alias: this.alias, url: this.url, ...(sqlState ? { sqlState } : {}) },
          cause: error,
        });
      }
    }
    return new MegaError('db.query_failed', `db "${this.alias}": ${redactText(e.message)}`, {
      details: { ...where, ...(e.detail && !sqlState?.startsWith('23') ? { detail: e.detail } : {}), ...names },
      cause: error,
    });
  }
}

/**
 * The pool as Kysely's PostgresDialect sees it. A checked-out connection has an error listener of
 * ours (pg-pool removes its own while a client is out: a connection dying inside a Kysely transaction
 * would otherwise be an unhandled 'error' event that ends the process) and is destroyed on release
 * when it broke. One wrapper per pg client, made once: Kysely caches its connection object per
 * client object, so a fresh wrapper per checkout would rebuild that on every statement. `end()` does
 * nothing: the adapter owns the pool. No `options`: Kysely would keep the connection parameters
 * (password included) for cancel connections.
 */
function guardedPool(pool: pg.Pool, readTimeoutMs: number, onLost: (error: Error) => void): PostgresPool {
  interface Guard {
    wrapper: PostgresPoolClient;
    /** Checked out through Kysely now (idle errors are the pool's to handle). */
    out: boolean;
    broken: Error | undefined;
  }
  const guards = new WeakMap<PoolClient, Guard>();
  const guardOf = (client: PoolClient): Guard => {
    const known = guards.get(client);
    if (known) return known;
    const guard: Guard = {
      out: false,
      broken: undefined,
      wrapper: {
        get processID() {
          return (client as PoolClient & { processID?: number }).processID;
        },
        // The client-side bound per statement (pg's `query_timeout`; the pool has none, see #readTimeoutMs).
        query: ((text: string | pg.Submittable, values?: readonly unknown[]) => {
          if (typeof text === 'string') return client.query(boundedQuery(text, values, readTimeoutMs));
          // A cursor (Kysely's stream()): pg reads the bound from the submitted object.
          if (readTimeoutMs) (text as { query_timeout?: number }).query_timeout = readTimeoutMs;
          return client.query(text);
        }) as unknown as PostgresPoolClient['query'],
        release(destroy?: boolean) {
          const broken = guard.broken;
          guard.out = false;
          guard.broken = undefined;
          // pg-pool sets a new `client.release` at every checkout: looked up now, not bound earlier.
          client.release(broken ?? destroy);
        },
      },
    };
    client.on('error', (error: Error) => {
      if (!guard.out) return;
      guard.broken = error;
      onLost(error);
    });
    guards.set(client, guard);
    return guard;
  };
  return {
    options: {},
    async connect(): Promise<PostgresPoolClient> {
      const guard = guardOf(await pool.connect());
      guard.out = true;
      guard.broken = undefined;
      return guard.wrapper;
    },
    end: async () => undefined,
  };
}

function toResult<R>(res: pg.QueryResult): QueryResult<R> {
  return { rows: res.rows as R[], rowCount: res.rowCount ?? res.rows.length };
}

function toSqlResult<R>(res: pg.QueryResult): SqlResult<R> {
  return { rows: res.rows as R[], numAffectedRows: BigInt(res.rowCount ?? res.rows.length) };
}

/** pg's per-query config with its (untyped) client-side bound. */
function boundedQuery(text: string, values: readonly unknown[] | undefined, timeoutMs: number): pg.QueryConfig {
  const config: pg.QueryConfig & { query_timeout?: number } = { text, values: values as unknown[] | undefined };
  if (timeoutMs) config.query_timeout = timeoutMs;
  return config;
}

/** A pooled connection's statement in flight, for the watchdog: since when, and how to fail it. */
interface Watched {
  since: number;
  fail: ((error: Error) => void) | undefined;
}
const WATCH = Symbol('mega.db-postgres.watch');
/** Set on a pooled connection once it has answered a statement: it may since have died idle. */
const SERVED = Symbol('mega.db-postgres.served');

/** pg's own message for a statement past its client-side bound (mapped to db.unavailable). */
const READ_TIMEOUT = 'Query read timeout';

/** The connection died under us (not a SQL error): safe to retry a statement outside a transaction. */
function isConnectionLoss(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  if (e?.code === '57P01' || e?.code === '57P02' || e?.code === '57P03' || e?.code === 'ECONNRESET' || e?.code === 'EPIPE') return true;
  return typeof e?.message === 'string' && /Connection terminated|Client has encountered a connection error|not queryable/.test(e.message);
}

export function checkPostgresDeclaration(alias: string, decl: ServiceDeclaration): void {
  if (decl.driver === 'pglite' && decl.url && !/^(memory|file):/.test(decl.url) && /^[a-z]+:\/\//.test(decl.url)) {
    throw new ConfigError(
      'adapter.invalid_url',
      `services.dbs.${alias}.url: PGlite takes memory:// or a directory, not "${redactUrl(decl.url)}"`,
      {
        details: { kind: 'dbs', alias, url: redactUrl(decl.url) },
      },
    );
  }
}
