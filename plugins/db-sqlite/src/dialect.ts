/**
 * Kysely over `node:sqlite`. Kysely's SqliteDialect expects a better-sqlite3-shaped database
 * (`prepare(sql)` → a statement with `reader`, `all(params[])`, `run(params[])`, `iterate(params[])`);
 * `node:sqlite` spreads its parameters and tells readers by `columns()`, so this adapts one to the
 * other. Kysely serialises every use of the one connection (its SQLite adapter says it has a single
 * connection), so a transaction holds it until commit or rollback.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { DatabaseConnection, Driver, SqliteDatabase, SqliteDialectConfig, SqliteStatement, TransactionSettings } from 'kysely';
import { CompiledQuery, SqliteDialect, SqliteDriver } from 'kysely';

/** Statements that return rows, for Node versions whose `StatementSync` has no `columns()` (before 22.16). */
const READER = /^\s*(select|with|pragma|values|explain)\b|\breturning\b/i;

/** Prepared statements kept per connection: preparing costs more than running a simple statement. */
const CACHE_SIZE = 200;

/**
 * JavaScript values SQLite cannot bind, as the values it stores: booleans as 1/0, dates as ISO-8601
 * text (sorts as time), undefined as NULL. Anything else unbindable (a plain object) is refused by
 * SQLite with a message naming the parameter's position, never its value.
 */
function bindable(value: unknown): SQLInputValue {
  if (value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (value instanceof Date) return value.toISOString();
  return value as SQLInputValue;
}

const bind = (params: ReadonlyArray<unknown>): SQLInputValue[] => params.map(bindable);

/** A `node:sqlite` database as Kysely's SqliteDialect wants it. */
export function kyselyDatabase(db: DatabaseSync): SqliteDatabase {
  const cache = new Map<string, { stmt: StatementSync; reader: boolean }>();
  const prepared = (sql: string) => {
    let hit = cache.get(sql);
    if (hit) {
      // Re-inserted: the Map's order is the recency order.
      cache.delete(sql);
    } else {
      const stmt = db.prepare(sql);
      hit = { stmt, reader: typeof stmt.columns === 'function' ? stmt.columns().length > 0 : READER.test(sql) };
      if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    }
    cache.set(sql, hit);
    return hit;
  };
  return {
    close: () => {
      cache.clear();
      if (db.isOpen) db.close();
    },
    prepare(sql: string): SqliteStatement {
      const { stmt, reader } = prepared(sql);
      return {
        reader,
        all: (params) => stmt.all(...bind(params)),
        run: (params) => stmt.run(...bind(params)),
        // A fresh statement: a cached one would be reset by the next use while this iterates.
        iterate: (params) => db.prepare(sql).iterate(...bind(params)),
      };
    },
  };
}

/**
 * Write transactions begin IMMEDIATE: the write lock is taken (waiting up to busy_timeout) when the
 * transaction starts, so another process writing the same file makes BEGIN wait instead of making a
 * statement fail halfway with SQLITE_BUSY (a deferred transaction upgrading from read to write cannot
 * wait). `accessMode: 'read only'` keeps a plain deferred BEGIN.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection, settings?: TransactionSettings): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(settings?.accessMode === 'read only' ? 'begin' : 'begin immediate'));
  }
}

export class NodeSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;

  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
}
