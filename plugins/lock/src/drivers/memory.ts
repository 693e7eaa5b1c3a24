/**
 * In-process locks: per key a holder with an expiry timer, a FIFO of waiters and a fencing counter
 * that grows for the life of the process.
 */
import type { Grant, LockDriver } from '../driver.js';

interface Entry {
  fence: number;
  holder: { owner: string; token: number; timer: NodeJS.Timeout } | undefined;
  waiters: Array<() => void>;
}

export class MemoryLockDriver implements LockDriver {
  readonly driver: 'memory' | 'cluster' = 'memory';
  readonly native = null;
  readonly #keys = new Map<string, Entry>();
  #lost: (key: string, token: number) => void = () => {};

  async connect(): Promise<void> {}

  onLost(listener: (key: string, token: number) => void): void {
    this.#lost = listener;
  }

  async acquire(key: string, owner: string, ttlMs: number, waitMs: number): Promise<Grant | undefined> {
    const entry: Entry = this.#keys.get(key) ?? { fence: 0, holder: undefined, waiters: [] };
    this.#keys.set(key, entry);
    const deadline = performance.now() + waitMs;
    while (entry.holder) {
      const left = deadline - performance.now();
      if (left <= 0) return undefined;
      const woken = await new Promise<boolean>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          resolve(true);
        };
        const timer = setTimeout(() => {
          entry.waiters = entry.waiters.filter((w) => w !== wake);
          resolve(false);
        }, left);
        entry.waiters.push(wake);
      });
      if (!woken) return undefined;
    }
    const token = ++entry.fence;
    const e = entry;
    entry.holder = {
      owner,
      token,
      timer: setTimeout(() => {
        e.holder = undefined;
        this.#lost(key, token);
        e.waiters.shift()?.();
      }, ttlMs),
    };
    return { token, sentAt: performance.now() };
  }

  async extend(key: string, owner: string, _token: number, ttlMs: number): Promise<boolean> {
    const entry = this.#keys.get(key);
    const holder = entry?.holder;
    if (!entry || holder?.owner !== owner) return false;
    clearTimeout(holder.timer);
    holder.timer = setTimeout(() => {
      entry.holder = undefined;
      this.#lost(key, holder.token);
      entry.waiters.shift()?.();
    }, ttlMs);
    return true;
  }

  async release(key: string, owner: string, _token?: number): Promise<0 | 1 | 2> {
    const entry = this.#keys.get(key);
    if (entry?.holder?.owner !== owner) return 0;
    clearTimeout(entry.holder.timer);
    entry.holder = undefined;
    entry.waiters.shift()?.();
    return 1;
  }

  async check(): Promise<void> {}

  async close(): Promise<void> {
    for (const entry of this.#keys.values()) if (entry.holder) clearTimeout(entry.holder.timer);
  }
}
