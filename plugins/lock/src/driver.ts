/** What a lock backend provides; `LockManager` adds local FIFO queues, leases, auto-extension and stats. */

/** A successful acquisition. */
export interface Grant {
  /** Fencing token. */
  token: number;
  /**
   * `performance.now()` when the request that took the key left (redis: the attempt that succeeded,
   * not the first of the retry loop; memory: the grant; cluster: the primary's grant). The lease is
   * valid for its TTL from here: time spent waiting before it is not subtracted.
   */
  sentAt: number;
}

export interface LockDriver {
  readonly driver: 'memory' | 'redis' | 'cluster';
  /** The backend's own handle (the ioredis client for redis), null otherwise. */
  readonly native: unknown;
  connect(): Promise<void>;
  /**
   * Takes `key` for `ttlMs`, waiting up to `waitMs`; resolves with the grant, or undefined when the
   * wait ran out. `owner` identifies this acquisition (only it may extend or release).
   */
  acquire(key: string, owner: string, ttlMs: number, waitMs: number): Promise<Grant | undefined>;
  /** Pushes the expiry back to `ttlMs` from now; false when `owner` no longer holds `key`. */
  extend(key: string, owner: string, token: number, ttlMs: number): Promise<boolean>;
  /** 0: `owner` no longer held `key`; 1: released; 2: released, and another process is waiting for it. */
  release(key: string, owner: string, token: number): Promise<0 | 1 | 2>;
  /** Backends that expire leases themselves report it here. */
  onLost(listener: (key: string, token: number) => void): void;
  check(): Promise<void>;
  close(): Promise<void>;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
