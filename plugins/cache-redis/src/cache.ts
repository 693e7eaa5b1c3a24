/** One Redis cache per alias: ioredis client, JSON values, TTLs, stats and a readiness check. */
import type { Adapter, OpStatsSnapshot } from '@mega/adapters';
import { errorSummary, OpStats, parseServiceUrl, redactUrl, serviceOptions } from '@mega/adapters';
import type { Logger, ServiceDeclaration, Static } from '@mega/kernel';
import { MegaError, Type, UnavailableError, within } from '@mega/kernel';
import type { RedisOptions } from 'ioredis';
import { Redis } from 'ioredis';

/** `services.caches.<alias>` with `driver: 'redis'`: the one source of its type and defaults. */
export const RedisCacheDeclaration = Type.Object(
  {
    driver: Type.Literal('redis'),
    /** `redis://[:password@]host:port[/db]` or `rediss://`. */
    url: Type.String({ minLength: 1 }),
    /** Boot continues when Redis is down (operations fail with `cache.unavailable` until it is back). */
    optional: Type.Boolean({ default: false }),
    /** Prefix for every key (ioredis `keyPrefix`; also applies to `.native` and to consumers' clients). */
    keyPrefix: Type.Optional(Type.String()),
    /** Per-command bound; a command waiting longer (Redis down) fails with `cache.unavailable`. */
    commandTimeoutMs: Type.Integer({ minimum: 1, default: 5000 }),
    /** How long boot waits for the first connection. */
    connectTimeoutMs: Type.Integer({ minimum: 1, default: 5000 }),
    /** Extra ioredis options, passed through. */
    options: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type RedisCacheDeclaration = Static<typeof RedisCacheDeclaration>;

export interface SetOptions {
  /** Expiry in milliseconds; none keeps the key until deleted. */
  ttlMs?: number;
}

export interface CacheStats extends OpStatsSnapshot {
  driver: 'redis';
  alias: string;
  url: string;
  status: string;
}

export class RedisCache implements Adapter {
  readonly driver = 'redis' as const;
  readonly alias: string;
  /** The URL with its password masked. */
  readonly url: string;
  /** The ioredis client, for everything this facade does not cover. */
  readonly native: Redis;
  readonly #stats = new OpStats();
  readonly #decl: RedisCacheDeclaration;
  readonly #log: Logger;
  readonly #dedicated = new Set<Redis>();
  #lastError: Error | undefined;

  constructor(alias: string, declaration: ServiceDeclaration, log: Logger) {
    this.alias = alias;
    parseServiceUrl('caches', alias, declaration.url, ['redis:', 'rediss:']);
    const decl = serviceOptions('caches', alias, declaration, RedisCacheDeclaration);
    this.#decl = decl;
    this.#log = log;
    this.url = redactUrl(decl.url);
    this.native = new Redis(decl.url, {
      lazyConnect: true,
      // In-flight commands survive a reconnect up to twice; new ones queue while reconnecting,
      // bounded by commandTimeout, so a Redis restart costs latency, not errors.
      maxRetriesPerRequest: 2,
      commandTimeout: decl.commandTimeoutMs,
      retryStrategy: (times) => Math.min(50 * times, 1000),
      connectionName: `mega:${alias}`,
      ...(decl.keyPrefix ? { keyPrefix: decl.keyPrefix } : {}),
      ...(decl.options as RedisOptions | undefined),
    });
    this.#watch(this.native, `cache "${alias}"`);
  }

  /**
   * A connection of its own for `purpose` (subscriber, blocking commands), same URL and options.
   * No command timeout and no retry limit: a blocking read or a subscription waits across
   * reconnects instead of failing. Closed with the alias at shutdown.
   */
  dedicated(purpose: string): Redis {
    const client = this.native.duplicate({
      connectionName: `mega:${this.alias}:${purpose}`,
      commandTimeout: undefined,
      maxRetriesPerRequest: null,
    });
    this.#watch(client, `cache "${this.alias}" (${purpose})`);
    this.#dedicated.add(client);
    client.once('end', () => this.#dedicated.delete(client));
    return client;
  }

  /** ioredis emits `error` on every failed reconnect: log the first of a streak, and the recovery. */
  #watch(client: Redis, what: string): void {
    let warned = false;
    client.on('error', (error: Error) => {
      if (client === this.native) this.#lastError = error;
      if (!warned) this.#log.warn({ err: errorSummary(error), alias: this.alias }, `${what} (${this.url}): ${error.message}; reconnecting`);
      warned = true;
    });
    client.on('ready', () => {
      if (warned) this.#log.info({ alias: this.alias }, `${what} reconnected`);
      warned = false;
    });
  }

  /** Connects at boot; a failure names the alias and URL (`cache.unavailable`). */
  async connect(): Promise<void> {
    const timeoutMs = this.#decl.connectTimeoutMs;
    try {
      await within(this.native.connect(), timeoutMs, () => new Error(`no answer within ${timeoutMs} ms`));
      await this.native.ping();
    } catch (error) {
      const reason = this.#lastError?.message ?? (error as Error).message;
      throw new UnavailableError('cache.unavailable', `cache "${this.alias}" cannot connect to ${this.url}: ${reason}`, {
        details: { alias: this.alias, url: this.url, driver: 'redis' },
        cause: this.#lastError ?? error,
      });
    }
  }

  /** QUIT (bounded), then a hard disconnect: the shared client and every dedicated one. */
  async close(): Promise<void> {
    await Promise.all([this.native, ...this.#dedicated].map(quit));
    this.#dedicated.clear();
  }

  /** The JSON value at `key`, or undefined when there is none. */
  get<T = unknown>(key: string): Promise<T | undefined> {
    return this.#op('get', key, async () => {
      const raw = await this.native.get(key);
      if (raw === null) return undefined;
      try {
        return JSON.parse(raw) as T;
      } catch (error) {
        throw new MegaError('cache.invalid_value', `cache "${this.alias}": the value at "${key}" is not JSON; read it with .native.get()`, {
          details: { alias: this.alias, key },
          cause: error,
        });
      }
    });
  }

  /** Stores `value` as JSON; `ttlMs` makes it expire. */
  set(key: string, value: unknown, options: SetOptions = {}): Promise<void> {
    const json = JSON.stringify(value);
    if (json === undefined) {
      return Promise.reject(
        new MegaError('cache.invalid_value', `cache "${this.alias}": ${typeof value} cannot be stored as JSON (key "${key}")`, {
          details: { alias: this.alias, key },
        }),
      );
    }
    const ttl = options.ttlMs;
    if (ttl !== undefined && !(Number.isInteger(ttl) && ttl > 0)) {
      return Promise.reject(new MegaError('cache.invalid_ttl', `ttlMs must be a positive integer, got ${ttl}`, { details: { key, ttl } }));
    }
    return this.#op('set', key, async () => {
      if (ttl === undefined) await this.native.set(key, json);
      else await this.native.set(key, json, 'PX', ttl);
    });
  }

  /** Deletes keys; resolves to how many existed. */
  del(...keys: string[]): Promise<number> {
    return this.#op('del', keys.join(','), () => this.native.del(...keys));
  }

  /** Readiness: a PING within the command timeout. */
  async check(): Promise<void> {
    await this.#op('ping', '', () => this.native.ping());
  }

  stats(): CacheStats {
    return { driver: 'redis', alias: this.alias, url: this.url, status: this.native.status, ...this.#stats.snapshot() };
  }

  async #op<T>(name: string, key: string, run: () => Promise<T>): Promise<T> {
    try {
      return await this.#stats.time(run);
    } catch (error) {
      if (error instanceof MegaError) throw error;
      if ((error as Error).name === 'ReplyError') {
        throw new MegaError('cache.failed', `cache "${this.alias}" ${name}${key ? ` "${key}"` : ''}: ${(error as Error).message}`, {
          details: { alias: this.alias, op: name },
          cause: error,
        });
      }
      throw new UnavailableError(
        'cache.unavailable',
        `cache "${this.alias}" ${name}${key ? ` "${key}"` : ''} failed: ${(error as Error).message}`,
        {
          details: { alias: this.alias, url: this.url, op: name, status: this.native.status },
          cause: error,
        },
      );
    }
  }
}

async function quit(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  // Never connected (lazy): QUIT would open a connection just to close it.
  if (client.status === 'wait') return client.disconnect();
  try {
    await within(client.quit(), 1000, () => new Error('quit timed out'));
  } catch {
    client.disconnect();
  }
}
