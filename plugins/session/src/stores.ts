/** Session stores: one JSON file per session, or one Redis key per session. */
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';

export type SessionData = Record<string, unknown>;

/** A loaded session and when the store will forget it (ms since the epoch). */
export interface StoredSession {
  data: SessionData;
  expiresAt: number;
}

export interface SessionStore {
  get(id: string): Promise<StoredSession | undefined>;
  set(id: string, data: SessionData, ttlMs: number): Promise<void>;
  destroy(id: string): Promise<void>;
  close(): Promise<void>;
}

/** Session ids are 32 random bytes in base64url: anything else never reaches a store (no path tricks). */
export const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

interface FileRecord {
  expiresAt: number;
  data: SessionData;
}

export class FileSessionStore implements SessionStore {
  #timer: NodeJS.Timeout | undefined;
  #ready: Promise<unknown> | undefined;

  constructor(
    readonly dir: string,
    readonly cleanupIntervalMs: number,
    onError: (error: unknown) => void = () => undefined,
  ) {
    if (cleanupIntervalMs > 0) {
      this.#timer = setInterval(() => {
        this.cleanup().catch(onError);
      }, cleanupIntervalMs);
      this.#timer.unref();
    }
  }

  /** True when the hourly (or configured) expiry scan is scheduled. */
  get scanning(): boolean {
    return this.#timer !== undefined;
  }

  #file(id: string): string {
    if (!SESSION_ID.test(id)) throw new Error('invalid session id');
    return join(this.dir, `${id}.json`);
  }

  async get(id: string): Promise<StoredSession | undefined> {
    let record: FileRecord;
    try {
      record = JSON.parse(await readFile(this.#file(id), 'utf8')) as FileRecord;
    } catch {
      return undefined;
    }
    if (!(record.expiresAt > Date.now())) {
      await this.destroy(id);
      return undefined;
    }
    return { data: record.data, expiresAt: record.expiresAt };
  }

  async set(id: string, data: SessionData, ttlMs: number): Promise<void> {
    this.#ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.#ready;
    const file = this.#file(id);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    await writeFile(tmp, JSON.stringify({ expiresAt: Date.now() + ttlMs, data } satisfies FileRecord), { mode: 0o600 });
    await rename(tmp, file);
  }

  async destroy(id: string): Promise<void> {
    await unlink(this.#file(id)).catch(() => undefined);
  }

  /** Deletes expired session files (and stale temp files); returns how many were removed. */
  async cleanup(now = Date.now()): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      const path = join(this.dir, name);
      if (name.endsWith('.tmp')) continue;
      if (!name.endsWith('.json')) continue;
      try {
        const record = JSON.parse(await readFile(path, 'utf8')) as FileRecord;
        if (record.expiresAt > now) continue;
      } catch {
        // unreadable or half-written: treat as expired
      }
      await unlink(path).catch(() => undefined);
      removed++;
    }
    return removed;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** Sessions in Redis through a client @mega/cache-redis owns (this store never closes it). */
export class RedisSessionStore implements SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async get(id: string): Promise<StoredSession | undefined> {
    if (!SESSION_ID.test(id)) return undefined;
    // One round trip for the value and its remaining lifetime.
    const replies = await this.redis
      .multi()
      .get(this.prefix + id)
      .pttl(this.prefix + id)
      .exec();
    const raw = replies?.[0]?.[1];
    const pttl = replies?.[1]?.[1];
    if (typeof raw !== 'string') return undefined;
    try {
      const data = JSON.parse(raw) as SessionData;
      return { data, expiresAt: typeof pttl === 'number' && pttl >= 0 ? Date.now() + pttl : Number.POSITIVE_INFINITY };
    } catch {
      return undefined;
    }
  }

  async set(id: string, data: SessionData, ttlMs: number): Promise<void> {
    await this.redis.set(this.prefix + id, JSON.stringify(data), 'PX', ttlMs);
  }

  async destroy(id: string): Promise<void> {
    await this.redis.del(this.prefix + id);
  }

  async close(): Promise<void> {}
}
