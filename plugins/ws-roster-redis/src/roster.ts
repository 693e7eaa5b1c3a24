/**
 * A roster in Redis hashes, one per channel: field = session id, value = JSON `{ m: member, e:
 * expiry ms }`. Writes are pipelined (one round trip for many sessions); expiry is lazy: a read
 * skips expired fields and deletes them in the background, and each hash gets a key TTL of twice
 * the member TTL so a channel nobody refreshes disappears whole.
 */
import type { Redis } from 'ioredis';

export interface RosterOptions {
  /** Key prefix (`mega:roster:`). */
  prefix: string;
  /** A member's lifetime without refresh. */
  ttlMs: number;
  now?: () => number;
}

export interface RosterWrite<M> {
  channel: string;
  sessionId: string;
  member: M;
}

export class RedisRoster<M = unknown> {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(redis: Redis, options: RosterOptions) {
    this.#redis = redis;
    this.#prefix = options.prefix;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
  }

  key(channel: string): string {
    return this.#prefix + channel;
  }

  /** Adds or refreshes members (one pipeline). */
  async add(writes: readonly RosterWrite<M>[]): Promise<void> {
    if (writes.length === 0) return;
    const expires = this.#now() + this.#ttlMs;
    const p = this.#redis.pipeline();
    const keys = new Set<string>();
    for (const w of writes) {
      const key = this.key(w.channel);
      p.hset(key, w.sessionId, JSON.stringify({ m: w.member, e: expires }));
      keys.add(key);
    }
    for (const k of keys) p.pexpire(k, this.#ttlMs * 2);
    await exec(p);
  }

  /** Refresh is a re-add with a new expiry. */
  refresh(writes: readonly RosterWrite<M>[]): Promise<void> {
    return this.add(writes);
  }

  async remove(entries: ReadonlyArray<{ channel: string; sessionId: string }>): Promise<void> {
    if (entries.length === 0) return;
    const p = this.#redis.pipeline();
    for (const e of entries) p.hdel(this.key(e.channel), e.sessionId);
    await exec(p);
  }

  /** Live members of a channel; expired fields are removed in the background. */
  async list(channel: string): Promise<Array<{ sessionId: string; member: M }>> {
    const key = this.key(channel);
    const all = await this.#redis.hgetall(key);
    const now = this.#now();
    const out: Array<{ sessionId: string; member: M }> = [];
    const stale: string[] = [];
    for (const [sessionId, raw] of Object.entries(all)) {
      const v = parse(raw);
      if (!v || v.e <= now) stale.push(sessionId);
      else out.push({ sessionId, member: v.m as M });
    }
    if (stale.length) this.#redis.hdel(key, ...stale).catch(() => {});
    return out;
  }
}

function parse(raw: string): { m: unknown; e: number } | undefined {
  try {
    const v = JSON.parse(raw) as { m?: unknown; e?: unknown };
    return typeof v === 'object' && v !== null && typeof v.e === 'number' && 'm' in v ? { m: v.m, e: v.e } : undefined;
  } catch {
    return undefined;
  }
}

async function exec(p: ReturnType<Redis['pipeline']>): Promise<void> {
  const results = await p.exec();
  const failed = results?.find(([err]) => err);
  if (failed?.[0]) throw failed[0];
}
