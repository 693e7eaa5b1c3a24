/**
 * The chat's recent messages: the last 30 entries of the last day. In Redis when the app has a cache
 * (a capped list with a TTL, shared by every process of the app), in this process's memory otherwise.
 */
import type { App } from '@mega/kernel';

export const HISTORY_LIMIT = 30;
export const HISTORY_TTL_MS = 24 * 60 * 60 * 1000;
/** The Redis key (after the cache alias's keyPrefix). */
export const HISTORY_KEY = 'chat:history';

export interface ChatEntry {
  id: string;
  userId: string;
  userName: string;
  text: string;
  ts: number;
}

export interface ChatHistory {
  readonly kind: 'redis' | 'memory';
  add(entry: ChatEntry): Promise<void>;
  recent(): Promise<ChatEntry[]>;
}

/** The subset of ioredis this uses. */
interface RedisLike {
  multi(): {
    rpush(key: string, value: string): unknown;
    ltrim(key: string, start: number, stop: number): unknown;
    pexpire(key: string, ms: number): unknown;
    exec(): Promise<unknown>;
  };
  lrange(key: string, start: number, stop: number): Promise<string[]>;
}

const fresh = (e: ChatEntry, now: number) => now - e.ts < HISTORY_TTL_MS;

class RedisHistory implements ChatHistory {
  readonly kind = 'redis';
  constructor(private readonly redis: RedisLike) {}

  async add(entry: ChatEntry): Promise<void> {
    // One round trip: append, keep the newest 30, and let a quiet room's history expire after a day.
    const m = this.redis.multi();
    m.rpush(HISTORY_KEY, JSON.stringify(entry));
    m.ltrim(HISTORY_KEY, -HISTORY_LIMIT, -1);
    m.pexpire(HISTORY_KEY, HISTORY_TTL_MS);
    await m.exec();
  }

  async recent(): Promise<ChatEntry[]> {
    const now = Date.now();
    const items: ChatEntry[] = [];
    for (const raw of await this.redis.lrange(HISTORY_KEY, -HISTORY_LIMIT, -1)) {
      try {
        const e = JSON.parse(raw) as ChatEntry;
        if (fresh(e, now)) items.push(e);
      } catch {
        // An entry someone else wrote that is not ours: left out of the replay, not fatal to it.
      }
    }
    return items;
  }
}

class MemoryHistory implements ChatHistory {
  readonly kind = 'memory';
  #items: ChatEntry[] = [];

  async add(entry: ChatEntry): Promise<void> {
    this.#items.push(entry);
    if (this.#items.length > HISTORY_LIMIT) this.#items.splice(0, this.#items.length - HISTORY_LIMIT);
  }

  async recent(): Promise<ChatEntry[]> {
    const now = Date.now();
    this.#items = this.#items.filter((e) => fresh(e, now));
    return [...this.#items];
  }
}

const histories = new WeakMap<App, ChatHistory>();

/** The app's history: Redis through @mega/cache-redis when a cache is declared, else memory. */
export function historyOf(app: App): ChatHistory {
  let h = histories.get(app);
  if (!h) {
    const cache = (app as unknown as { cache?: () => { native: RedisLike } }).cache;
    h = typeof cache === 'function' ? new RedisHistory(cache.call(app).native) : new MemoryHistory();
    histories.set(app, h);
  }
  return h;
}
