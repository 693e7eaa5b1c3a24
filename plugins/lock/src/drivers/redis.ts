/**
 * Redis locks: the single-instance Redlock algorithm in three Lua scripts (acquire, extend,
 * release), each atomic and owner-checked. Acquisition also INCRs a per-key fencing counter; a
 * missing counter (new key, or Redis lost its data) is seeded from the Redis clock in microseconds,
 * so tokens keep growing even across a restart without persistence. A failed attempt leaves a short
 * "someone waits" marker; the releasing process then yields one retry interval before its next local
 * waiter tries, so another process polling the key gets its turn instead of starving.
 */
import type { Logger } from '@mega/kernel';
import { redactUrl, UnavailableError, within } from '@mega/kernel';
import type { Result } from 'ioredis';
import { Redis } from 'ioredis';
import type { LockDriver } from '../driver.js';
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

export interface RedisLockOptions {
  alias: string;
  url: string;
  /** Pause between attempts while the key is held (jittered ±50%). Default 10. */
  retryDelayMs: number;
  connectTimeoutMs?: number;
}

export class RedisLockDriver implements LockDriver {
  readonly driver = 'redis' as const;
  readonly alias: string;
  readonly url: string | undefined;
  readonly native: Redis;
  readonly #retryDelayMs: number;
  readonly #connectTimeoutMs: number;
  #lastError: Error | undefined;

  constructor(options: RedisLockOptions, log: Logger) {
    this.alias = options.alias;
    this.url = redactUrl(options.url);
    this.#retryDelayMs = options.retryDelayMs;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.native = new Redis(options.url, {
      lazyConnect: true,
      // No offline queue: while Redis is unreachable a lock call fails at once (and acquire retries
      // until its deadline) instead of running late, after the caller gave up, when Redis is back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(50 * times, 1000),
      connectionName: `mega:lock:${options.alias}`,
    });
    defineLockCommands(this.native);
    let warned = false;
    this.native.on('error', (error: Error) => {
      this.#lastError = error;
      if (!warned) log.warn({ err: error, alias: this.alias }, `lock redis "${this.alias}" (${this.url}): ${error.message}; reconnecting`);
      warned = true;
    });
    this.native.on('ready', () => {
      warned = false;
    });
  }

  async connect(): Promise<void> {
    try {
      await within(this.native.connect(), this.#connectTimeoutMs, () => new Error(`no answer within ${this.#connectTimeoutMs} ms`));
      await this.native.ping();
    } catch (error) {
      throw new UnavailableError(
        'lock.unavailable',
        `lock redis "${this.alias}" cannot connect to ${this.url}: ${this.#lastError?.message ?? (error as Error).message}`,
        { details: { alias: this.alias, url: this.url, driver: 'redis' }, cause: this.#lastError ?? error },
      );
    }
  }

  onLost(): void {
    // Redis expires keys silently: the manager's validity timer and failed extensions report loss.
  }

  acquire(key: string, owner: string, ttlMs: number, waitMs: number): Promise<number | undefined> {
    const deadline = performance.now() + waitMs;
    const markMs = Math.max(50, this.#retryDelayMs * 3);
    // Fast path: a free key costs one round trip and no loop.
    return this.native.megaLockAcquire(key, `${key}:fence`, `${key}:wait`, owner, ttlMs, markMs).then(
      (token) => (token > 0 ? token : this.#retry(key, owner, ttlMs, deadline, markMs, undefined)),
      (error: unknown) => this.#retry(key, owner, ttlMs, deadline, markMs, error),
    );
  }

  async #retry(
    key: string,
    owner: string,
    ttlMs: number,
    deadline: number,
    markMs: number,
    firstError: unknown,
  ): Promise<number | undefined> {
    let lastError = firstError;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      await sleep(Math.min(left, this.#retryDelayMs * (0.5 + Math.random())));
      try {
        const result = await this.native.megaLockAcquire(key, `${key}:fence`, `${key}:wait`, owner, ttlMs, markMs);
        if (result > 0) return result;
        lastError = undefined;
      } catch (error) {
        lastError = error;
      }
    }
    if (lastError) {
      throw new UnavailableError('lock.unavailable', `lock redis "${this.alias}" (${this.url}): ${(lastError as Error).message}`, {
        details: { alias: this.alias, key },
        cause: lastError,
      });
    }
    return undefined;
  }

  async extend(key: string, owner: string, _token: number, ttlMs: number): Promise<boolean> {
    return (await this.native.megaLockExtend(key, owner, ttlMs)) === 1;
  }

  release(key: string, owner: string): Promise<0 | 1 | 2> {
    return this.native.megaLockRelease(key, `${key}:wait`, owner) as Promise<0 | 1 | 2>;
  }

  async check(): Promise<void> {
    try {
      await this.native.ping();
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

  async close(): Promise<void> {
    if (this.native.status === 'end') return;
    await this.native.quit().catch(() => this.native.disconnect());
  }

  /** How long a releasing process lets others try first when the key is contended. */
  get yieldMs(): number {
    return this.#retryDelayMs;
  }
}
