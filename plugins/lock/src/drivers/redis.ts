/**
 * Redis locks: the single-instance Redlock algorithm in three Lua scripts (acquire, extend,
 * release), each atomic and owner-checked. Acquisition also INCRs a per-key fencing counter; a
 * missing counter (new key, or Redis lost its data) is seeded from the Redis clock in microseconds,
 * so tokens keep growing even across a restart without persistence. A failed attempt leaves a short
 * "someone waits" marker; the releasing process then yields one retry interval before its next local
 * waiter tries, so another process polling the key gets its turn instead of starving.
 */
import type { Adapter } from '@mega/adapters';
import { UnavailableError } from '@mega/kernel';
import type { Redis, Result } from 'ioredis';
import type { Grant, LockDriver } from '../driver.js';
import { sleep } from '../driver.js';

/** KEYS: lock, fence, wait marker. ARGV: owner, ttl ms, marker ttl ms. -> token, or -pttl of the holder. */
export const ACQUIRE_LUA = `
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('incr', KEYS[2])
  if token == 1 then
    local now = redis.call('time')
    token = tonumber(now[1]) * 1000000 + tonumber(now[2])
    redis.call('set', KEYS[2], string.format('%.0f', token))
  end
  return token
end
redis.call('set', KEYS[3], '1', 'PX', ARGV[3])
return -math.max(redis.call('pttl', KEYS[1]), 1)`;

/** KEYS: lock. ARGV: owner, ttl ms. -> 1 extended, 0 not the owner. */
export const EXTEND_LUA = `
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0`;

/** KEYS: lock, wait marker. ARGV: owner. -> 2 released and contended, 1 released, 0 not the owner. */
export const RELEASE_LUA = `
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  return 1 + redis.call('exists', KEYS[2])
end
return 0`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    megaLockAcquire(lock: string, fence: string, wait: string, owner: string, ttlMs: number, markMs: number): Result<number, Context>;
    megaLockExtend(lock: string, owner: string, ttlMs: number): Result<number, Context>;
    megaLockRelease(lock: string, wait: string, owner: string): Result<0 | 1 | 2, Context>;
  }
}

/** Defines the three scripts on a client (EVALSHA, reloaded by ioredis after a Redis restart). */
export function defineLockCommands(redis: Redis): void {
  redis.defineCommand('megaLockAcquire', { numberOfKeys: 3, lua: ACQUIRE_LUA });
  redis.defineCommand('megaLockExtend', { numberOfKeys: 1, lua: EXTEND_LUA });
  redis.defineCommand('megaLockRelease', { numberOfKeys: 2, lua: RELEASE_LUA });
}

/**
 * One `services.caches` alias as the lock backend: the shared ioredis client of @mega/cache-redis
 * (never quit here) with the three scripts defined on it. Commands fail at once while the client is
 * not ready instead of waiting in its offline queue: an acquisition retries until its own deadline,
 * and an extension that cannot run must be reported as such, not run late after the lease is gone.
 */
export class RedisLockConnection implements Adapter {
  readonly alias: string;
  readonly url: string;
  readonly client: Redis;

  constructor(alias: string, client: Redis, url: string) {
    this.alias = alias;
    this.client = client;
    this.url = url;
    if (!('megaLockAcquire' in client)) defineLockCommands(client);
  }

  /** The client is connected by @mega/cache-redis (set up first); this checks it answers. */
  async connect(): Promise<void> {
    try {
      this.ready();
      await this.client.ping();
    } catch (error) {
      throw new UnavailableError('lock.unavailable', `lock redis "${this.alias}" cannot reach ${this.url}: ${(error as Error).message}`, {
        details: { alias: this.alias, url: this.url, driver: 'redis' },
        cause: error,
      });
    }
  }

  /** Throws unless the client can send a command now. */
  ready(): Redis {
    if (this.client.status !== 'ready') throw new Error(`the Redis connection is ${this.client.status}`);
    return this.client;
  }

  async check(): Promise<void> {
    try {
      await this.ready().ping();
    } catch (error) {
      throw new UnavailableError(
        'lock.unavailable',
        `lock redis "${this.alias}" (${this.url}) is unavailable: ${(error as Error).message}`,
        {
          details: { alias: this.alias, url: this.url },
          cause: error,
        },
      );
    }
  }

  /** The client belongs to @mega/cache-redis, which closes it after this plugin stops. */
  async close(): Promise<void> {}
}

export class RedisLockDriver implements LockDriver {
  readonly driver = 'redis' as const;
  readonly #conn: RedisLockConnection;
  readonly #retryDelayMs: number;

  /** `retryDelayMs`: pause between attempts while the key is held (jittered ±50%). */
  constructor(connection: RedisLockConnection, retryDelayMs: number) {
    this.#conn = connection;
    this.#retryDelayMs = retryDelayMs;
  }

  get alias(): string {
    return this.#conn.alias;
  }

  get native(): Redis {
    return this.#conn.client;
  }

  /** Connected and checked through its `RedisLockConnection` (the AdapterSet of the plugin). */
  async connect(): Promise<void> {}

  onLost(): void {
    // Redis expires keys silently: the manager's validity timer and failed extensions report loss.
  }

  acquire(key: string, owner: string, ttlMs: number, waitMs: number): Promise<Grant | undefined> {
    const sentAt = performance.now();
    const deadline = sentAt + waitMs;
    const markMs = Math.max(50, this.#retryDelayMs * 3);
    // Fast path: a free key costs one round trip and no loop.
    return this.#acquireOnce(key, owner, ttlMs, markMs).then(
      (token) => (token > 0 ? { token, sentAt } : this.#retry(key, owner, ttlMs, deadline, markMs, undefined)),
      (error: unknown) => this.#retry(key, owner, ttlMs, deadline, markMs, error),
    );
  }

  #acquireOnce(key: string, owner: string, ttlMs: number, markMs: number): Promise<number> {
    try {
      return this.#conn.ready().megaLockAcquire(key, `${key}:fence`, `${key}:wait`, owner, ttlMs, markMs);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #retry(
    key: string,
    owner: string,
    ttlMs: number,
    deadline: number,
    markMs: number,
    firstError: unknown,
  ): Promise<Grant | undefined> {
    let lastError = firstError;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      await sleep(Math.min(left, this.#retryDelayMs * (0.5 + Math.random())));
      // The lease's TTL starts when the attempt that succeeds is sent, not when the wait began.
      const sentAt = performance.now();
      try {
        const result = await this.#acquireOnce(key, owner, ttlMs, markMs);
        if (result > 0) return { token: result, sentAt };
        lastError = undefined;
      } catch (error) {
        lastError = error;
      }
    }
    if (lastError) {
      throw new UnavailableError('lock.unavailable', `lock redis "${this.alias}" (${this.#conn.url}): ${(lastError as Error).message}`, {
        details: { alias: this.alias, key },
        cause: lastError,
      });
    }
    return undefined;
  }

  async extend(key: string, owner: string, _token: number, ttlMs: number): Promise<boolean> {
    return (await this.#conn.ready().megaLockExtend(key, owner, ttlMs)) === 1;
  }

  async release(key: string, owner: string): Promise<0 | 1 | 2> {
    return (await this.#conn.ready().megaLockRelease(key, `${key}:wait`, owner)) as 0 | 1 | 2;
  }

  check(): Promise<void> {
    return this.#conn.check();
  }

  /** Nothing of its own to close: the connection is @mega/cache-redis's. */
  async close(): Promise<void> {}

  /** How long a releasing process lets others try first when the key is contended. */
  get yieldMs(): number {
    return this.#retryDelayMs;
  }
}
