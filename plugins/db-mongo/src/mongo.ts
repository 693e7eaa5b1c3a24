/** One MongoDB database per alias through the official driver; stats come from its command events. */
import type { Adapter, MegaTracer, OpStatsSnapshot, TraceSpan } from '@mega/adapters';
import { errorSummary, OpStats, parseServiceUrl, redactText, redactUrl, serviceOptions } from '@mega/adapters';
import type { Logger, ServiceDeclaration, Static } from '@mega/kernel';
import { Type, UnavailableError } from '@mega/kernel';
import type { Collection, Db, Document, MongoClientOptions } from 'mongodb';
import { MongoClient } from 'mongodb';

export const MONGO_DRIVERS = ['mongodb', 'mongo'] as const;

/** `services.dbs.<alias>` served by this plugin: the one source of its type and defaults. */
export const MongoDeclaration = Type.Object(
  {
    driver: Type.Union(MONGO_DRIVERS.map((d) => Type.Literal(d))),
    /** `mongodb://host:port/dbname` (or `mongodb+srv://`); the path names the database. */
    url: Type.String({ minLength: 1 }),
    /** Boot continues when the server is down (operations fail until it answers). */
    optional: Type.Boolean({ default: false }),
    /** Database name when the URL has none (then `mega`). */
    database: Type.Optional(Type.String({ minLength: 1 })),
    /** Server selection (and boot connect) timeout. */
    connectTimeoutMs: Type.Integer({ minimum: 1, default: 5000 }),
    /** Extra MongoClient options, passed through. */
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type MongoDeclaration = Static<typeof MongoDeclaration>;

export interface MongoStats extends OpStatsSnapshot {
  driver: 'mongodb';
  alias: string;
  url: string | undefined;
  database: string;
  /** Connection pool (all servers), from the driver's pool events: the same shape as @mega/db-postgres's. */
  pool: { total: number; idle: number; waiting: number };
}

export class MongoDb implements Adapter {
  readonly driver = 'mongodb' as const;
  readonly alias: string;
  readonly url: string | undefined;
  /** The MongoClient. */
  readonly native: MongoClient;
  /** The database the URL (or `database`) names. */
  readonly db: Db;
  readonly #stats = new OpStats();
  readonly #pool = { total: 0, inUse: 0, waiting: 0 };

  /** `tracer`: the `tracing` service when @mega/tracing is loaded (a client span per command). */
  constructor(alias: string, declaration: ServiceDeclaration, log: Logger, tracer?: MegaTracer) {
    this.alias = alias;
    const url = parseServiceUrl('dbs', alias, declaration.url, ['mongodb:', 'mongodb+srv:']);
    const decl = serviceOptions('dbs', alias, declaration, MongoDeclaration);
    this.url = redactUrl(decl.url);
    const timeout = decl.connectTimeoutMs;
    this.native = new MongoClient(decl.url, {
      serverSelectionTimeoutMS: timeout,
      connectTimeoutMS: timeout,
      appName: `mega:${alias}`,
      monitorCommands: true,
      ...(decl.options as MongoClientOptions | undefined),
    });
    this.db = this.native.db(decl.database ?? (decodeURIComponent(url.pathname.slice(1)) || 'mega'));
    // A write that reports writeErrors (duplicate key, validation) succeeded as a command but failed for the caller.
    this.native.on('commandSucceeded', (e) =>
      this.#stats.record(e.duration, ((e.reply as { writeErrors?: unknown[] })?.writeErrors?.length ?? 0) > 0),
    );
    const pool = this.#pool;
    this.native.on('connectionCreated', () => void pool.total++);
    this.native.on('connectionClosed', () => void pool.total--);
    this.native.on('connectionCheckOutStarted', () => void pool.waiting++);
    this.native.on('connectionCheckOutFailed', () => void pool.waiting--);
    this.native.on('connectionCheckedOut', () => {
      pool.waiting--;
      pool.inUse++;
    });
    this.native.on('connectionCheckedIn', () => void pool.inUse--);
    this.native.on('commandFailed', (e) => {
      this.#stats.record(e.duration, true);
      log.debug({ alias, command: e.commandName, err: errorSummary(e.failure) }, `db "${alias}": ${e.commandName} failed`);
    });
    if (tracer) traceCommands(this.native, alias, tracer);
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
      throw new UnavailableError(
        'db.unavailable',
        `db "${this.alias}" cannot connect to ${this.url}: ${redactText((error as Error).message)}`,
        {
          details: { alias: this.alias, url: this.url, driver: 'mongodb' },
          cause: error,
        },
      );
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
      throw new UnavailableError(
        'db.unavailable',
        `db "${this.alias}" (${this.url}) is unavailable: ${redactText((error as Error).message)}`,
        {
          details: { alias: this.alias, url: this.url },
          cause: error,
        },
      );
    }
  }

  stats(): MongoStats {
    const { total, inUse, waiting } = this.#pool;
    return {
      driver: 'mongodb',
      alias: this.alias,
      url: this.url,
      database: this.db.databaseName,
      pool: { total, idle: Math.max(0, total - inUse), waiting },
      ...this.#stats.snapshot(),
    };
  }
}

/**
 * A client span per command from the driver's command events (emitted in the caller's async
 * context, so the span is a child of the operation that issued it). No command document in the
 * span: it holds the values.
 */
function traceCommands(client: MongoClient, alias: string, tracer: MegaTracer): void {
  const spans = new Map<number, TraceSpan>();
  client.on('commandStarted', (e) => {
    const collection = (e.command as Record<string, unknown>)[e.commandName];
    const target = typeof collection === 'string' ? collection : undefined;
    const span = tracer.start(target ? `${e.commandName} ${target}` : e.commandName, 'client', {
      'db.system.name': 'mongodb',
      'db.operation.name': e.commandName,
      'db.collection.name': target,
      'db.namespace': e.databaseName,
      'mega.db.alias': alias,
    });
    spans.set(e.requestId, span);
  });
  client.on('commandSucceeded', (e) => {
    spans.get(e.requestId)?.end();
    spans.delete(e.requestId);
  });
  client.on('commandFailed', (e) => {
    const span = spans.get(e.requestId);
    if (!span) return;
    spans.delete(e.requestId);
    span.fail(e.failure);
    span.end();
  });
}
