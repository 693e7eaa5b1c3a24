/** One MongoDB database per alias through the official driver; stats come from its command events. */
import type { Logger, OpStatsSnapshot, ServiceDeclaration } from '@mega/kernel';
import { OpStats, parseServiceUrl, redactUrl, UnavailableError } from '@mega/kernel';
import type { Collection, Db, Document, MongoClientOptions } from 'mongodb';
import { MongoClient } from 'mongodb';

export const MONGO_DRIVERS = ['mongodb', 'mongo'] as const;

export interface MongoDeclaration extends ServiceDeclaration {
  driver: (typeof MONGO_DRIVERS)[number];
  /** `mongodb://host:port/dbname` (or `mongodb+srv://`); the path names the database. */
  url: string;
  optional?: boolean;
  /** Database name when the URL has none. */
  database?: string;
  /** Server selection (and boot connect) timeout. Default 5000. */
  connectTimeoutMs?: number;
  /** Extra MongoClient options, passed through. */
  options?: MongoClientOptions;
}

export interface MongoStats extends OpStatsSnapshot {
  driver: 'mongodb';
  alias: string;
  url: string | undefined;
  database: string;
}

export class MongoDb {
  readonly driver = 'mongodb' as const;
  readonly alias: string;
  readonly url: string | undefined;
  /** The MongoClient. */
  readonly native: MongoClient;
  /** The database the URL (or `database`) names. */
  readonly db: Db;
  readonly #stats = new OpStats();

  constructor(alias: string, decl: MongoDeclaration, log: Logger) {
    this.alias = alias;
    const url = parseServiceUrl('dbs', alias, decl.url, ['mongodb:', 'mongodb+srv:']);
    this.url = redactUrl(decl.url);
    const timeout = decl.connectTimeoutMs ?? 5000;
    this.native = new MongoClient(decl.url, {
      serverSelectionTimeoutMS: timeout,
      connectTimeoutMS: timeout,
      appName: `mega:${alias}`,
      monitorCommands: true,
      ...decl.options,
    });
    this.db = this.native.db(decl.database ?? (decodeURIComponent(url.pathname.slice(1)) || 'mega'));
    // A write that reports writeErrors (duplicate key, validation) succeeded as a command but failed for the caller.
    this.native.on('commandSucceeded', (e) =>
      this.#stats.record(e.duration, ((e.reply as { writeErrors?: unknown[] })?.writeErrors?.length ?? 0) > 0),
    );
    this.native.on('commandFailed', (e) => {
      this.#stats.record(e.duration, true);
      log.debug({ alias, command: e.commandName, err: e.failure }, `db "${alias}": ${e.commandName} failed`);
    });
  }

  /** A collection of this alias's database (the driver's own `Collection`). */
  collection<T extends Document = Document>(name: string): Collection<T> {
    return this.db.collection<T>(name);
  }

  async connect(): Promise<void> {
    try {
      await this.native.connect();
      await this.db.command({ ping: 1 });
    } catch (error) {
      throw new UnavailableError('db.unavailable', `db "${this.alias}" cannot connect to ${this.url}: ${(error as Error).message}`, {
        details: { alias: this.alias, url: this.url, driver: 'mongodb' },
        cause: error,
      });
    }
  }

  async close(): Promise<void> {
    await this.native.close();
  }

  /** Readiness: `ping` answered. */
  async check(): Promise<void> {
    try {
      await this.db.command({ ping: 1 });
    } catch (error) {
      throw new UnavailableError('db.unavailable', `db "${this.alias}" (${this.url}) is unavailable: ${(error as Error).message}`, {
        details: { alias: this.alias, url: this.url },
        cause: error,
      });
    }
  }

  stats(): MongoStats {
    return { driver: 'mongodb', alias: this.alias, url: this.url, database: this.db.databaseName, ...this.#stats.snapshot() };
  }
}
