/**
 * Applies and reverts migrations of one app on one database, holding the migration lock, and
 * records them in `mega_migrations` (table or collection) with their checksum.
 *
 * - Postgres/PGlite and SQLite: each migration and its record run in one transaction; a failure
 *   rolls both back. SQLite takes `BEGIN EXCLUSIVE` and re-reads the record inside it (its lock).
 * - MySQL/MariaDB and MongoDB: DDL cannot roll back (MySQL commits each DDL statement), so the
 *   record is written first as `partial` and counts finished `step()`s; a failed migration stays
 *   `partial` and the next `up` resumes after its last finished step.
 */
import type { SqlDb, SqlDialect } from '@mega/adapters';
import { redactText } from '@mega/adapters';
import { ConfigError, ConflictError, isMegaError, MegaError, UnavailableError } from '@mega/kernel';
import type { TableSpec } from '@mega/models';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { Db } from 'mongodb';
import { normalizeTable } from './diff.js';
import type { LoadedMigration, MigrationFile } from './files.js';
import type { LockOptions, MongoLock } from './lock.js';
import { inProcess, mongoLock, mysqlLock, pgLock } from './lock.js';
import { createTableFromSpec, sqlTypes } from './sql-types.js';
import type { Dialect, JsonSchemaDoc, Migration, MongoMigrationContext, SqlMigrationContext } from './types.js';

export type RowStatus = 'applied' | 'partial' | 'reverting';

/** One record of `mega_migrations`. */
export interface AppliedRow {
  app: string;
  /** The migration id. */
  name: string;
  checksum: string;
  batch: number;
  status: RowStatus;
  /** Finished steps of the current direction (partial / reverting). */
  steps: number;
  durationMs: number;
  appliedAt: Date;
  error: string | null;
}

export type Direction = 'up' | 'down';

export interface RunnerOptions {
  /** `mega_migrations` */
  table: string;
  lockTimeoutMs: number;
  /** Mongo lock lease. */
  lockTtlMs: number;
  log(line: string): void;
  warn(line: string): void;
}

/** A migration run's outcome: `skipped` when another process applied (or reverted) it first. */
export type RunResult = 'done' | 'skipped';

export interface Session {
  readonly dialect: Dialect;
  rows(): Promise<AppliedRow[]>;
  run(m: LoadedMigration, direction: Direction, batch: number): Promise<RunResult>;
  /** `mega migrate resolve`: mark as applied (with the file's checksum) or remove the record. */
  mark(m: MigrationFile, as: 'applied' | 'rolled-back', batch: number): Promise<void>;
}

export interface Backend {
  readonly dialect: Dialect;
  /** A human name for messages: `primary (postgres)`. */
  readonly what: string;
  locked<T>(fn: (session: Session) => Promise<T>): Promise<T>;
}

const errorText = (error: unknown) => redactText((error as Error)?.message?.split('\n')[0] ?? String(error)).slice(0, 2000);

function failed(m: MigrationFile, direction: Direction, error: unknown, step: string | undefined, rolledBack: boolean): MegaError {
  if (isMegaError(error) && (error.code === 'migrations.lock_lost' || error.code === 'migrations.failed')) return error;
  const where = step ? ` at step "${step}"` : '';
  const state = rolledBack
    ? 'rolled back, nothing recorded'
    : 'not rolled back (this database cannot roll DDL back): the record stays partial and the next run resumes after the last finished step';
  return new MegaError('migrations.failed', `migration ${m.id} (${direction}) failed${where}: ${errorText(error)}; ${state}`, {
    details: { id: m.id, direction, step, rolledBack },
    cause: error,
  });
}

/** Labelled steps, counted; steps below `skip` already ran in an earlier, failed attempt. */
class Steps {
  count = 0;
  current: string | undefined;
  constructor(
    private readonly skip: number,
    private readonly after: (done: number) => Promise<void>,
    private readonly log: (line: string) => void,
  ) {}
  readonly step = async (label: string, fn: () => unknown): Promise<void> => {
    const n = this.count++;
    if (n < this.skip) {
      this.log(`    skip  ${label} (finished in an earlier run)`);
      return;
    }
    this.current = label;
    await fn();
    this.current = undefined;
    await this.after(n + 1);
  };
}

// ---- SQL ------------------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: mega_migrations and the migrated tables are not in any model map.
type Conn = Kysely<any>;

const BUSY = /SQLITE_BUSY|database is locked/i;

async function sqliteFkCheck(conn: Conn): Promise<void> {
  const bad = await sql<{ table: string; parent: string }>`pragma foreign_key_check`.execute(conn);
  if (bad.rows.length) {
    const first = bad.rows[0] as { table: string; parent: string };
    throw new MegaError(
      'migrations.foreign_key_violation',
      `rows of ${first.table} reference missing rows of ${first.parent} after this migration (${bad.rows.length} violation(s))`,
      {
        details: { violations: bad.rows.length, table: first.table, parent: first.parent },
      },
    );
  }
}

/** SQLite's table rebuild (https://sqlite.org/lang_altertable.html#otheralter), inside the migration's transaction. */
async function rebuildTable(conn: Conn, specIn: TableSpec, options: { from?: string; copy?: Record<string, string> } = {}): Promise<void> {
  const t = sqlTypes('sqlite');
  const spec = normalizeTable(specIn);
  const from = options.from ?? spec.name;
  const tmp = `__mega_new_${spec.name}`;
  let copy = options.copy;
  if (!copy) {
    const old = await sql<{ name: string }>`select name from pragma_table_info(${from})`.execute(conn);
    const names = new Set(old.rows.map((r) => r.name));
    copy = Object.fromEntries(spec.fields.filter((f) => names.has(f.name)).map((f) => [f.name, f.name]));
  }
  await createTableFromSpec(conn, t, spec, tmp);
  const cols = Object.entries(copy);
  if (cols.length) {
    await sql`insert into ${sql.table(tmp)} (${sql.join(cols.map(([n]) => sql.ref(n)))}) select ${sql.join(
      cols.map(([, o]) => sql.ref(o)),
    )} from ${sql.table(from)}`.execute(conn);
  }
  await conn.schema.dropTable(from).execute();
  await conn.schema.alterTable(tmp).renameTo(spec.name).execute();
  for (const i of spec.indexes) {
    let b = conn.schema.createIndex(i.name).on(spec.name).columns(i.columns);
    if (i.unique) b = b.unique();
    await b.execute();
  }
}

function fromSqlRow(r: Record<string, unknown>): AppliedRow {
  return {
    app: String(r.app),
    name: String(r.name),
    checksum: String(r.checksum),
    batch: Number(r.batch),
    status: r.status as RowStatus,
    steps: Number(r.steps),
    durationMs: Number(r.duration_ms),
    appliedAt: r.applied_at instanceof Date ? r.applied_at : new Date(String(r.applied_at)),
    error: (r.error as string | null) ?? null,
  };
}

export class SqlBackend implements Backend {
  readonly dialect: SqlDialect;
  readonly what: string;
  readonly #db: SqlDb;
  readonly #app: string;
  readonly #o: RunnerOptions;

  constructor(db: SqlDb, app: string, options: RunnerOptions) {
    this.#db = db;
    this.dialect = db.dialect;
    this.#app = app;
    this.#o = options;
    this.what = `db "${db.alias}" (${db.dialect})`;
  }

  locked<T>(fn: (session: Session) => Promise<T>): Promise<T> {
    const lockOptions: LockOptions = { timeoutMs: this.#o.lockTimeoutMs, waiting: this.#o.log };
    // A lost connection surfaces as the adapter's `db.unavailable` (the boot check skips an optional db that is down).
    const unavailable = (error: unknown): never => {
      if (isMegaError(error)) throw error;
      const mapped = this.#db.toMegaError(error);
      throw mapped.code === 'db.unavailable' ? mapped : error;
    };
    return inProcess(this.#db, () =>
      this.#db
        .kysely()
        .connection()
        .execute(async (conn) => {
          const release =
            this.dialect === 'postgres'
              ? await pgLock(conn, this.what, lockOptions)
              : this.dialect === 'mysql'
                ? await mysqlLock(conn, this.what, lockOptions)
                : undefined;
          try {
            await this.#busy(() => this.#ensureTable(conn));
            return await fn(this.#session(conn));
          } finally {
            await release?.();
          }
        })
        .catch(unavailable),
    );
  }

  /** SQLite answers SQLITE_BUSY while another process holds its write lock: retry until lockTimeoutMs. */
  async #busy<T>(fn: () => Promise<T>): Promise<T> {
    if (this.dialect !== 'sqlite') return fn();
    const end = Date.now() + this.#o.lockTimeoutMs;
    let told = false;
    for (let wait = 20; ; wait = Math.min(wait * 2, 250)) {
      try {
        return await fn();
      } catch (error) {
        if (!BUSY.test(String((error as Error)?.message)) && !BUSY.test(String((error as { code?: string })?.code))) throw error;
        if (Date.now() > end) {
          throw new MegaError('migrations.lock_timeout', `${this.what} stayed locked by another process for ${this.#o.lockTimeoutMs} ms`, {
            details: { db: this.what, timeoutMs: this.#o.lockTimeoutMs },
            cause: error,
          });
        }
        if (!told) this.#o.log(`waiting for the migration lock of ${this.what} (another process holds it)`);
        told = true;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  async #ensureTable(conn: Conn): Promise<void> {
    const t = sqlTypes(this.dialect);
    await conn.schema
      .createTable(this.#o.table)
      .ifNotExists()
      .addColumn('app', t.string(100), (c) => c.notNull())
      .addColumn('name', t.string(200), (c) => c.notNull())
      .addColumn('checksum', t.string(64), (c) => c.notNull())
      .addColumn('batch', t.integer(), (c) => c.notNull())
      .addColumn('status', t.string(16), (c) => c.notNull())
      .addColumn('steps', t.integer(), (c) => c.notNull().defaultTo(0))
      .addColumn('duration_ms', t.integer(), (c) => c.notNull().defaultTo(0))
      .addColumn('applied_at', t.timestamp(), (c) => c.notNull().defaultTo(t.now()))
      .addColumn('error', t.text())
      .addPrimaryKeyConstraint(`${this.#o.table}_pkey`, ['app', 'name'])
      .execute();
  }

  #session(conn: Conn): Session {
    const table = this.#o.table;
    const app = this.#app;
    const dialect = this.dialect;
    const read = async (q: Conn, name?: string) => {
      let b = q.selectFrom(table).selectAll().where('app', '=', app);
      if (name) b = b.where('name', '=', name);
      return (await b.orderBy('name').execute()).map(fromSqlRow);
    };
    const context = (steps: Steps): SqlMigrationContext => ({
      app,
      alias: this.#db.alias,
      dialect,
      db: conn,
      schema: conn.schema,
      sql,
      t: sqlTypes(dialect),
      step: steps.step,
      log: (line) => this.#o.log(`    ${line}`),
      rebuildTable: (spec, options) => {
        if (dialect !== 'sqlite')
          throw new MegaError('migrations.invalid_call', 'rebuildTable() is for SQLite (other dialects alter columns in place)');
        return rebuildTable(conn, spec, options);
      },
    });
    const insertRow = (q: Conn, m: MigrationFile, batch: number, status: RowStatus, steps: number, durationMs: number) =>
      q
        .insertInto(table)
        .values({
          app,
          name: m.id,
          checksum: m.checksum,
          batch,
          status,
          steps,
          duration_ms: durationMs,
          applied_at: new Date(),
          error: null,
        })
        .execute();
    const update = (m: MigrationFile, values: Record<string, unknown>) =>
      conn.updateTable(table).set(values).where('app', '=', app).where('name', '=', m.id).execute();

    const transactional = async (m: LoadedMigration, direction: Direction, batch: number): Promise<RunResult> => {
      let fkWas: number | undefined;
      if (dialect === 'sqlite') {
        // A rebuild drops and re-creates referenced tables: foreign keys are checked once, before commit.
        fkWas = Number((await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(conn)).rows[0]?.foreign_keys ?? 0);
        await sql`pragma foreign_keys = off`.execute(conn);
      }
      const steps = new Steps(0, async () => undefined, this.#o.log);
      const started = performance.now();
      try {
        await this.#busy(() => (dialect === 'sqlite' ? sql`begin exclusive` : sql`begin`).execute(conn));
        try {
          const [row] = await read(conn, m.id);
          if ((direction === 'up' && row) || (direction === 'down' && !row)) {
            await sql`commit`.execute(conn);
            return 'skipped';
          }
          await m.migration[direction](context(steps));
          if (direction === 'up') await insertRow(conn, m, batch, 'applied', steps.count, Math.round(performance.now() - started));
          else await conn.deleteFrom(table).where('app', '=', app).where('name', '=', m.id).execute();
          if (dialect === 'sqlite' && fkWas) await sqliteFkCheck(conn);
          await sql`commit`.execute(conn);
          return 'done';
        } catch (error) {
          await sql`rollback`.execute(conn).catch(() => undefined);
          throw failed(m, direction, error, steps.current, true);
        }
      } finally {
        if (fkWas) await sql`pragma foreign_keys = on`.execute(conn);
      }
    };

    const stepwise = async (m: LoadedMigration, direction: Direction, batch: number): Promise<RunResult> => {
      const [row] = await read(conn, m.id);
      const progress: RowProgress = {
        set: (fields) => update(m, fields),
        begin: () => insertRow(conn, m, batch, 'partial', 0, 0),
        applied: (steps, ms) => update(m, { status: 'applied', steps, duration_ms: ms, applied_at: new Date() }),
        remove: () => conn.deleteFrom(table).where('app', '=', app).where('name', '=', m.id).execute(),
      };
      return resumable(m, direction, row, progress, (steps) => m.migration[direction](context(steps)), this.#o);
    };

    return {
      dialect,
      rows: () => read(conn),
      run: (m, direction, batch) => {
        // SQLite can run anything in a transaction; Postgres unless the migration opts out (create index concurrently).
        const tx = dialect === 'sqlite' || (dialect === 'postgres' && m.migration.transactional !== false);
        return tx ? transactional(m, direction, batch) : stepwise(m, direction, batch);
      },
      mark: async (m, as, batch) => {
        await this.#busy(async () => {
          await conn.deleteFrom(table).where('app', '=', app).where('name', '=', m.id).execute();
          if (as === 'applied') await insertRow(conn, m, batch, 'applied', 0, 0);
        });
      },
    };
  }
}

function partialError(m: MigrationFile, row: AppliedRow): MegaError {
  const what = row.status === 'partial' ? 'up' : 'down';
  return new ConflictError(
    'migrations.partial',
    `migration ${m.id} stopped half way through its ${what} (${row.steps} step(s) finished${row.error ? `: ${row.error}` : ''}): finish it with mega migrate ${what}, or repair the database by hand and run mega migrate resolve ${m.id} --applied | --rolled-back`,
    { details: { id: m.id, status: row.status, steps: row.steps } },
  );
}

/** How a run without a transaction records its progress: in the SQL table or the Mongo collection. */
interface RowProgress {
  set(fields: { status?: RowStatus; steps?: number; checksum?: string; error?: string | null }): Promise<unknown>;
  /** A new `partial` record, before the first step of an `up`. */
  begin(): Promise<unknown>;
  applied(steps: number, durationMs: number): Promise<unknown>;
  /** Drops the record after a full `down`. */
  remove(): Promise<unknown>;
}

/**
 * A migration with no transaction around it (MariaDB DDL, Postgres opted out, Mongo): each finished
 * step is recorded, so a failed run stays `partial` / `reverting` and the next one resumes after it.
 */
async function resumable(
  m: LoadedMigration,
  direction: Direction,
  row: AppliedRow | undefined,
  progress: RowProgress,
  run: (steps: Steps) => unknown,
  o: { warn: (line: string) => void; log: (line: string) => void },
): Promise<RunResult> {
  const started = performance.now();
  let skip = 0;
  if (direction === 'up') {
    if (row?.status === 'applied') return 'skipped';
    if (row?.status === 'reverting') throw partialError(m, row);
    if (row) {
      skip = row.steps;
      if (row.checksum !== m.checksum) o.warn(`migration ${m.id} changed since its failed run: resuming after step ${skip} as recorded`);
      await progress.set({ checksum: m.checksum, error: null });
    } else await progress.begin();
  } else {
    if (!row) return 'skipped';
    if (row.status === 'partial') throw partialError(m, row);
    if (row.status === 'reverting') skip = row.steps;
    else await progress.set({ status: 'reverting', steps: 0, error: null });
  }
  const steps = new Steps(skip, (done) => progress.set({ steps: done }).then(() => undefined), o.log);
  try {
    await run(steps);
  } catch (error) {
    await progress.set({ error: errorText(error) }).catch(() => undefined);
    throw failed(m, direction, error, steps.current, false);
  }
  if (direction === 'up') await progress.applied(steps.count, Math.round(performance.now() - started));
  else await progress.remove();
  return 'done';
}

// ---- MongoDB --------------------------------------------------------------------------------

/** An applied row as stored: keyed by `app/name`, fenced by the lock token that last wrote it. */
interface MongoRow extends AppliedRow {
  _id: string;
  token: number;
}

const NOT_IMPLEMENTED = (e: unknown) =>
  (e as { code?: number }).code === 238 || /not implemented|not supported/i.test(String((e as Error)?.message));

/** The slice of @mega/db-mongo's adapter a migration needs. */
export interface MongoAdapter {
  readonly alias: string;
  readonly driver: 'mongodb';
  readonly db: Db;
}

export function isMongoAdapter(value: unknown): value is MongoAdapter {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as MongoAdapter).driver === 'mongodb' &&
    typeof (value as MongoAdapter).db === 'object'
  );
}

export class MongoBackend implements Backend {
  readonly dialect = 'mongo' as const;
  readonly what: string;
  readonly #adapter: MongoAdapter;
  readonly #app: string;
  readonly #o: RunnerOptions;
  #warnedValidators = false;

  constructor(adapter: MongoAdapter, app: string, options: RunnerOptions) {
    this.#adapter = adapter;
    this.#app = app;
    this.#o = options;
    this.what = `db "${adapter.alias}" (mongodb)`;
  }

  locked<T>(fn: (session: Session) => Promise<T>): Promise<T> {
    return inProcess(this.#adapter, async () => {
      const lock = await mongoLock(this.#adapter.db, this.what, this.#o.lockTtlMs, {
        timeoutMs: this.#o.lockTimeoutMs,
        waiting: this.#o.log,
      }).catch((error: unknown) => {
        // No server: the adapter's `db.unavailable`, like the SQL side.
        if (
          /MongoServerSelectionError|MongoNetworkError|MongoNotConnectedError|MongoTopologyClosedError/.test((error as Error)?.name ?? '')
        ) {
          throw new UnavailableError('db.unavailable', `${this.what} is unavailable: ${errorText(error)}`, { cause: error });
        }
        throw error;
      });
      try {
        return await fn(this.#session(lock));
      } finally {
        await lock.release().catch(() => undefined);
      }
    });
  }

  #noValidators(error: unknown): void {
    if (!this.#warnedValidators)
      this.#o.warn(`${this.what} does not support collection validators (${errorText(error)}): validators skipped`);
    this.#warnedValidators = true;
  }

  #session(lock: MongoLock): Session {
    const db = this.#adapter.db;
    const app = this.#app;
    const col = db.collection<MongoRow>(this.#o.table);
    const id = (m: MigrationFile) => `${app}/${m.id}`;
    const fromDoc = ({ _id, token, ...r }: MongoRow): AppliedRow => ({ ...r, appliedAt: new Date(r.appliedAt) });
    // Fencing: a write lands only on a record no newer lock holder has touched.
    const fenced = async (m: MigrationFile, set: Partial<MongoRow>) => {
      await lock.assertHeld();
      await col.updateOne({ _id: id(m), token: { $lte: lock.token } }, { $set: { ...set, token: lock.token } });
    };
    const setValidator = async (name: string, validator: JsonSchemaDoc | null) => {
      try {
        await db.command({ collMod: name, validator: validator ? { $jsonSchema: validator } : {}, validationLevel: 'moderate' });
      } catch (error) {
        if (NOT_IMPLEMENTED(error)) this.#noValidators(error);
        else throw error;
      }
    };
    const context = (steps: Steps): MongoMigrationContext => ({
      app,
      alias: this.#adapter.alias,
      dialect: 'mongo',
      db,
      step: steps.step,
      log: (line) => this.#o.log(`    ${line}`),
      setValidator,
      createCollection: async (name, validator) => {
        try {
          await db.createCollection(name, validator ? { validator: { $jsonSchema: validator }, validationLevel: 'moderate' } : {});
        } catch (error) {
          const code = (error as { code?: number }).code;
          if (code === 48) {
            // Already there (an insert created it): keep it, set its validator.
            if (validator) await setValidator(name, validator);
          } else if (validator && NOT_IMPLEMENTED(error)) {
            this.#noValidators(error);
            await db.createCollection(name);
          } else throw error;
        }
      },
      dropCollection: async (name) => {
        try {
          await db.dropCollection(name);
        } catch (error) {
          if ((error as { code?: number }).code !== 26) throw error;
        }
      },
    });

    return {
      dialect: 'mongo',
      rows: async () => (await col.find({ app }).sort({ name: 1 }).toArray()).map(fromDoc),
      run: async (m, direction, batch) => {
        const row = await col.findOne({ _id: id(m) });
        const progress: RowProgress = {
          set: (fields) => fenced(m, fields),
          begin: async () => {
            await lock.assertHeld();
            await col.insertOne({
              _id: id(m),
              app,
              name: m.id,
              checksum: m.checksum,
              batch,
              status: 'partial',
              steps: 0,
              durationMs: 0,
              appliedAt: new Date(),
              error: null,
              token: lock.token,
            });
          },
          applied: (steps, durationMs) => fenced(m, { status: 'applied', steps, durationMs, appliedAt: new Date() }),
          remove: async () => {
            await lock.assertHeld();
            await col.deleteOne({ _id: id(m), token: { $lte: lock.token } });
          },
        };
        return resumable(
          m,
          direction,
          row ? fromDoc(row) : undefined,
          progress,
          (steps) => m.migration[direction](context(steps)),
          this.#o,
        );
      },
      mark: async (m, as, batch) => {
        await lock.assertHeld();
        await col.deleteOne({ _id: id(m) });
        if (as === 'applied') {
          await col.insertOne({
            _id: id(m),
            app,
            name: m.id,
            checksum: m.checksum,
            batch,
            status: 'applied',
            steps: 0,
            durationMs: 0,
            appliedAt: new Date(),
            error: null,
            token: lock.token,
          });
        }
      },
    };
  }
}

// ---- the migrator ---------------------------------------------------------------------------

export type MigrationState = 'applied' | 'pending' | 'drift' | 'partial' | 'reverting' | 'missing';

export interface StatusEntry {
  id: string;
  state: MigrationState;
  destructive?: boolean;
  row?: AppliedRow;
}

export interface Plan {
  files: LoadedMigration[];
  rows: AppliedRow[];
}

export function statusOf(files: readonly MigrationFile[], rows: readonly AppliedRow[]): StatusEntry[] {
  const byId = new Map(rows.map((r) => [r.name, r]));
  const out: StatusEntry[] = files.map((f) => {
    const row = byId.get(f.id);
    if (!row) return { id: f.id, state: 'pending' };
    if (row.status !== 'applied') return { id: f.id, state: row.status, row };
    return { id: f.id, state: row.checksum === f.checksum ? 'applied' : 'drift', row };
  });
  const ids = new Set(files.map((f) => f.id));
  for (const r of rows) if (!ids.has(r.name)) out.push({ id: r.name, state: 'missing', row: r });
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

export function driftError(entries: readonly StatusEntry[], what: string): ConflictError | undefined {
  const drift = entries.filter((e) => e.state === 'drift').map((e) => e.id);
  if (!drift.length) return undefined;
  return new ConflictError(
    'migrations.drift',
    `${drift.length === 1 ? 'migration' : 'migrations'} ${drift.join(', ')} changed after ${drift.length === 1 ? 'it was' : 'they were'} applied to ${what} (checksum differs): restore the file(s) from version control, or write a new migration for the change (mega migrate resolve <id> --applied accepts the file as it is now)`,
    { details: { drift, db: what } },
  );
}

export interface UpOptions {
  to?: string | undefined;
  /** Production: refuse destructive migrations unless set. */
  allowDestructive: boolean;
  production: boolean;
}

export interface Progress {
  id: string;
  direction: Direction;
  result: RunResult;
  ms: number;
}

/** Picks the id named by `--to`: a full id, its timestamp, or its name. */
export function resolveId(files: readonly MigrationFile[], to: string): string {
  const hit = files.filter((f) => f.id === to || f.id.startsWith(`${to}-`) || f.id.slice(15) === to);
  if (hit.length !== 1) {
    throw new ConfigError(
      'migrations.unknown_target',
      `--to ${to} names ${hit.length ? 'several migrations' : 'no migration'}${hit.length ? `: ${hit.map((f) => f.id).join(', ')}` : ''}`,
      {
        details: { to, matches: hit.map((f) => f.id) },
      },
    );
  }
  return (hit[0] as MigrationFile).id;
}

export const isDestructiveMigration = (m: Migration) => m.destructive === true;

function destructiveGate(ms: readonly LoadedMigration[], o: { allowDestructive: boolean; production: boolean }, verb: string): void {
  if (!o.production || o.allowDestructive) return;
  const bad = ms.filter((m) => isDestructiveMigration(m.migration)).map((m) => m.id);
  if (!bad.length) return;
  throw new ConflictError(
    'migrations.destructive',
    `${verb} ${bad.join(', ')} would lose data (marked destructive) in production: run again with --allow-destructive once you have checked it`,
    {
      details: { migrations: bad },
    },
  );
}

/** Applies pending migrations (in id order, up to `to`), holding the lock; one progress call per migration. */
export async function migrateUp(
  backend: Backend,
  files: LoadedMigration[],
  o: UpOptions,
  progress: (p: Progress) => void,
): Promise<Progress[]> {
  return backend.locked(async (s) => {
    const rows = await s.rows();
    const status = statusOf(files, rows);
    const drift = driftError(status, backend.what);
    if (drift) throw drift;
    const last = o.to ? resolveId(files, o.to) : undefined;
    const states = new Map(status.map((e) => [e.id, e.state]));
    const pending = files.filter((f) => states.get(f.id) !== 'applied' && (!last || f.id <= last));
    destructiveGate(pending, o, 'applying');
    const batch = Math.max(0, ...rows.map((r) => r.batch)) + 1;
    const out: Progress[] = [];
    for (const m of pending) {
      const t0 = performance.now();
      const result = await s.run(m, 'up', batch);
      const p = { id: m.id, direction: 'up' as const, result, ms: Math.round(performance.now() - t0) };
      out.push(p);
      progress(p);
    }
    return out;
  });
}

export interface DownOptions {
  steps?: number | undefined;
  to?: string | undefined;
  allowDestructive: boolean;
  production: boolean;
}

/** Reverts the newest applied migrations (`steps`, default 1, or every one after `to`). */
export async function migrateDown(
  backend: Backend,
  files: LoadedMigration[],
  o: DownOptions,
  progress: (p: Progress) => void,
): Promise<Progress[]> {
  if (o.production && !o.allowDestructive) {
    throw new ConflictError(
      'migrations.destructive',
      'mega migrate down / redo in production reverts schema (and may drop data): run again with --allow-destructive',
      {
        details: { env: 'production' },
      },
    );
  }
  return backend.locked(async (s) => {
    const rows = await s.rows();
    const status = statusOf(files, rows);
    const drift = driftError(status, backend.what);
    if (drift) throw drift;
    const applied = status
      .filter((e) => e.state === 'applied' || e.state === 'reverting' || e.state === 'missing' || e.state === 'partial')
      .reverse();
    let targets: StatusEntry[];
    if (o.to) {
      const keep = resolveId(files, o.to);
      targets = applied.filter((e) => e.id > keep);
    } else targets = applied.slice(0, o.steps ?? 1);
    const byId = new Map(files.map((f) => [f.id, f]));
    const out: Progress[] = [];
    for (const e of targets) {
      const m = byId.get(e.id);
      if (!m) {
        throw new ConfigError(
          'migrations.missing_file',
          `migration ${e.id} is applied to ${backend.what} but its file is gone: restore it to revert it`,
          {
            details: { id: e.id },
          },
        );
      }
      const t0 = performance.now();
      const result = await s.run(m, 'down', 0);
      const p = { id: m.id, direction: 'down' as const, result, ms: Math.round(performance.now() - t0) };
      out.push(p);
      progress(p);
    }
    return out;
  });
}

export async function migrationStatus(backend: Backend, files: MigrationFile[]): Promise<StatusEntry[]> {
  return backend.locked(async (s) => statusOf(files, await s.rows()));
}

export async function resolveMigration(backend: Backend, file: MigrationFile, as: 'applied' | 'rolled-back'): Promise<void> {
  await backend.locked(async (s) => {
    const rows = await s.rows();
    await s.mark(file, as, Math.max(0, ...rows.map((r) => r.batch)) + 1);
  });
}
