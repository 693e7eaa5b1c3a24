/**
 * Fixed-window rate limiting per key (client IP). In memory by default (one Map per app, swept
 * every window); in Redis when a cache alias is configured (one Lua call per request: INCR, set
 * the window's expiry on the first hit, return the remaining time).
 */
import type { Redis } from 'ioredis';

export interface RateResult {
  count: number;
  /** Milliseconds until the window resets. */
  resetMs: number;
}

export interface RateStore {
  /** Counts one hit; sync for memory, a promise for Redis. */
  hit(key: string): RateResult | Promise<RateResult>;
  close(): void | Promise<void>;
}

export class MemoryRateStore implements RateStore {
  readonly #windows = new Map<string, { count: number; reset: number }>();
  readonly #timer: NodeJS.Timeout;

  constructor(private readonly windowMs: number) {
    this.#timer = setInterval(() => this.sweep(), windowMs);
    this.#timer.unref();
  }

  hit(key: string): RateResult {
    const now = Date.now();
    let entry = this.#windows.get(key);
    if (entry === undefined || entry.reset <= now) {
      entry = { count: 0, reset: now + this.windowMs };
      this.#windows.set(key, entry);
    }
    entry.count++;
    return { count: entry.count, resetMs: entry.reset - now };
  }

  /** Drops finished windows (memory stays proportional to recently active clients). */
  sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.#windows) if (entry.reset <= now) this.#windows.delete(key);
  }

  get size(): number {
    return this.#windows.size;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

const HIT_SCRIPT = `
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {c, ttl}
`;

type RedisWithHit = Redis & { megaRateHit(key: string, windowMs: number): Promise<[number, number]> };

export class RedisRateStore implements RateStore {
  readonly #redis: RedisWithHit;

  constructor(
    redis: Redis,
    private readonly windowMs: number,
    private readonly prefix: string,
  ) {
    if (!('megaRateHit' in redis)) redis.defineCommand('megaRateHit', { numberOfKeys: 1, lua: HIT_SCRIPT });
    this.#redis = redis as RedisWithHit;
  }

  async hit(key: string): Promise<RateResult> {
    const [count, resetMs] = await this.#redis.megaRateHit(this.prefix + key, this.windowMs);
    return { count, resetMs };
  }

  close(): void {}
}
