/** What a lock backend provides; `LockManager` adds local FIFO queues, leases, auto-extension and stats. */

export interface LockDriver {
  readonly driver: 'memory' | 'redis' | 'cluster';
  /** The backend's own handle (the ioredis client for redis), null otherwise. */
  readonly native: unknown;
  connect(): Promise<void>;
  /**
   * Takes `key` for `ttlMs`, waiting up to `waitMs`; resolves with the fencing token, or undefined
   * when the wait ran out. `owner` identifies this acquisition (only it may extend or release).
   */
  acquire(key: string, owner: string, ttlMs: number, waitMs: number): Promise<number | undefined>;
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
