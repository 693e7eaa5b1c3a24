/** One Redis cache per alias: ioredis client, JSON values, TTLs, stats and a readiness check. */
import type { Logger, OpStatsSnapshot, ServiceDeclaration } from '@mega/kernel';
import { MegaError, OpStats, parseServiceUrl, redactUrl, UnavailableError, within } from '@mega/kernel';
import type { RedisOptions } from 'ioredis';
import { Redis } from 'ioredis';

export interface RedisCacheDeclaration extends ServiceDeclaration {
  driver: 'redis';
  url: string;
  /** Boot continues when Redis is down (operations fail with `cache.unavailable` until it is back). */
  optional?: boolean;
  /** Prefix for every key (ioredis `keyPrefix`; also applies to `.native`). */
  keyPrefix?: string;
  /** Per-command bound; a command waiting longer (Redis down) fails with `cache.unavailable`. Default 5000. */
  commandTimeoutMs?: number;
  /** How long boot waits for the first connection. Default 5000. */
  connectTimeoutMs?: number;
  /** Extra ioredis options, passed through. */
  options?: RedisOptions;
}

export interface SetOptions {
  /** Expiry in milliseconds; none keeps the key until deleted. */
  ttlMs?: number;
}

export interface CacheStats extends OpStatsSnapshot {
  driver: 'redis';
  alias: string;
  url: string | undefined;
  status: string;
}

export class RedisCache {
  readonly driver = 'redis' as const;
  readonly alias: string;
  /** The URL with its password masked. */
  readonly url: string | undefined;
  /** The ioredis client, for everything this facade does not cover. */
  readonly native: Redis;
  readonly #stats = new OpStats();
  readonly #decl: RedisCacheDeclaration;
  readonly #log: Logger;
  #lastError: Error | undefined;

  constructor(alias: string, decl: RedisCacheDeclaration, log: Logger) {
    this.alias = alias;
    this.#decl = decl;
    this.#log = log;
    parseServiceUrl('caches', alias, decl.url, ['redis:', 'rediss:']);
    this.url = redactUrl(decl.url);
    this.native = new Redis(decl.url, {
      lazyConnect: true,
      // In-flight commands survive a reconnect up to twice; new ones queue while reconnecting,
      // bounded by commandTimeout, so a Redis restart costs latency, not errors.
      maxRetriesPerRequest: 2,
      commandTimeout: decl.commandTimeoutMs ?? 5000,
      retryStrategy: (times) => Math.min(50 * times, 1000),
      connectionName: `mega:${alias}`,
      ...(decl.keyPrefix ? { keyPrefix: decl.keyPrefix } : {}),
      ...decl.options,
    });
    let warned = false;
    this.native.on('error', (error: Error) => {
      this.#lastError = error;
      if (!warned) this.#log.warn({ err: error, alias }, `cache "${alias}" (${this.url}): ${error.message}; reconnecting`);
      warned = true;
    });
    this.native.on('ready', () => {
      if (warned) this.#log.info({ alias }, `cache "${alias}" reconnected`);
      warned = false;
    });
  }

  /** Connects at boot; a failure names the alias and URL (`cache.unavailable`). */
  async connect(): Promise<void> {
    const timeoutMs = this.#decl.connectTimeoutMs ?? 5000;
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

  async close(): Promise<void> {
    if (this.native.status === 'end') return;
    try {
      await within(this.native.quit(), 1000, () => new Error('quit timed out'));
    } catch {
      this.native.disconnect();
    }
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
