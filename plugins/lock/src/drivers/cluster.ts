/**
 * Locks shared by the workers of `mega start --workers N`: the primary holds the table
 * (`createLockTable` in ../primary.ts), FIFO across workers, with fencing counters and TTLs; a worker
 * that dies releases its leases. Outside a cluster it is the memory driver.
 */
import { MegaError, UnavailableError } from '@mega/kernel';
import type { Grant } from '../driver.js';
import { MemoryLockDriver } from './memory.js';

/** Replies and pushes from the primary. */
export type LockWire =
  | { type: 'mega:lock'; op: 'granted'; rid: number; key: string; token: number; at: number }
  | { type: 'mega:lock'; op: 'timeout'; rid: number; key: string }
  | { type: 'mega:lock'; op: 'extended' | 'released'; rid: number; key: string; ok: boolean }
  | { type: 'mega:lock'; op: 'lost'; key: string; token: number };

const inCluster = (): boolean => typeof process.send === 'function' && process.env.MEGA_WORKER_SLOT !== undefined;

export class ClusterLockDriver extends MemoryLockDriver {
  override readonly driver = 'cluster' as const;
  readonly #pending = new Map<number, (msg: LockWire) => void>();
  #nextRid = 1;
  #listener: ((msg: unknown) => void) | undefined;
  #lostListener: (key: string, token: number) => void = () => {};

  override async connect(): Promise<void> {
    if (this.#listener || !inCluster()) return;
    this.#listener = (raw: unknown) => {
      const msg = raw as LockWire;
      if (msg?.type !== 'mega:lock') return;
      if (msg.op === 'lost') return this.#lostListener(msg.key, msg.token);
      const done = this.#pending.get(msg.rid);
      this.#pending.delete(msg.rid);
      done?.(msg);
    };
    process.on('message', this.#listener);
  }

  override onLost(listener: (key: string, token: number) => void): void {
    super.onLost(listener);
    this.#lostListener = listener;
  }

  override async acquire(key: string, owner: string, ttlMs: number, waitMs: number): Promise<Grant | undefined> {
    if (!this.#listener) return super.acquire(key, owner, ttlMs, waitMs);
    const reply = await this.#call({ op: 'acquire', key, ttlMs, waitMs });
    if (reply.op !== 'granted') return undefined;
    // The primary's TTL runs from its grant (`at`, Date.now() there: same host, same clock), not from
    // when this worker asked: a queued request may have waited long before it.
    return { token: reply.token, sentAt: performance.now() - Math.max(0, Date.now() - reply.at) };
  }

  override async extend(key: string, owner: string, token: number, ttlMs: number): Promise<boolean> {
    if (!this.#listener) return super.extend(key, owner, token, ttlMs);
    const reply = await this.#call({ op: 'extend', key, token, ttlMs });
    return reply.op === 'extended' && reply.ok;
  }

  override async release(key: string, owner: string, token?: number): Promise<0 | 1 | 2> {
    if (!this.#listener) return super.release(key, owner);
    const reply = await this.#call({ op: 'release', key, token });
    return reply.op === 'released' && reply.ok ? 1 : 0;
  }

  override async check(): Promise<void> {
    if (this.#listener && !process.connected)
      throw new UnavailableError('lock.unavailable', 'cluster lock: the IPC channel to the primary is closed');
  }

  override async close(): Promise<void> {
    if (this.#listener) process.off('message', this.#listener);
    this.#listener = undefined;
    for (const done of this.#pending.values()) done({ type: 'mega:lock', op: 'timeout', rid: 0, key: '' });
    this.#pending.clear();
    await super.close();
  }

  #call(msg: { op: string; key: string; ttlMs?: number; waitMs?: number; token?: number }): Promise<LockWire> {
    if (!process.connected) {
      return Promise.reject(new UnavailableError('lock.unavailable', 'cluster lock: the IPC channel to the primary is closed'));
    }
    const rid = this.#nextRid++;
    return new Promise<LockWire>((resolve, reject) => {
      this.#pending.set(rid, resolve);
      try {
        process.send?.({ type: 'mega:lock', rid, ...msg });
      } catch (error) {
        this.#pending.delete(rid);
        reject(new MegaError('lock.unavailable', `cluster lock: ${(error as Error).message}`, { cause: error }));
      }
    });
  }
}
