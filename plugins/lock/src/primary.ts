/**
 * The primary's half of the `cluster` lock driver (`mega start --workers N`): one lock table for all
 * workers. Per key: the holder, a FIFO of waiters, and a fencing counter that only grows. `acquire`
 * is granted at once or queued until `waitMs` (then `timeout`); a lease not extended within its TTL
 * is taken back (`lost` to its holder) and passed to the next waiter; `extend`/`release` work only
 * for the current holder's token. A worker that exits releases its leases and leaves every queue.
 * Entries stay for the primary's lifetime so that fencing tokens keep growing per key.
 */
import type { PrimaryHandler, PrimaryWorker } from '@mega/kernel';

export const LOCK_CHANNEL = 'mega:lock';

/** A worker's request (the worker side is `ClusterLockDriver`; it sends `ttlMs` with acquire and extend). */
type LockRequest = { type: typeof LOCK_CHANNEL; op: string; rid: number; key: string; ttlMs: number; waitMs?: number; token?: number };
interface Waiter {
  worker: PrimaryWorker;
  rid: number;
  ttlMs: number;
  timer: NodeJS.Timeout;
}
interface Entry {
  fence: number;
  holder: { worker: PrimaryWorker; token: number; timer: NodeJS.Timeout } | undefined;
  queue: Waiter[];
}

export interface LockTable extends PrimaryHandler {
  /** Leases held and waiters queued (for tests and diagnostics). */
  size(): { held: number; waiting: number };
}

export function createLockTable(): LockTable {
  const keys = new Map<string, Entry>();
  const send = (w: PrimaryWorker, msg: Record<string, unknown>) => {
    if (w.isConnected()) w.send({ type: LOCK_CHANNEL, ...msg });
  };
  const expire = (key: string, entry: Entry, ttlMs: number) =>
    setTimeout(() => {
      const holder = entry.holder;
      if (!holder) return;
      send(holder.worker, { op: 'lost', key, token: holder.token });
      entry.holder = undefined;
      grantNext(key, entry);
    }, ttlMs);
  const grant = (key: string, entry: Entry, w: PrimaryWorker, rid: number, ttlMs: number) => {
    const token = ++entry.fence;
    entry.holder = { worker: w, token, timer: expire(key, entry, ttlMs) };
    send(w, { op: 'granted', rid, key, token, at: Date.now() });
  };
  const grantNext = (key: string, entry: Entry) => {
    const next = entry.queue.shift();
    if (!next) return;
    clearTimeout(next.timer);
    grant(key, entry, next.worker, next.rid, next.ttlMs);
  };
  const holds = (entry: Entry | undefined, w: PrimaryWorker, token: number | undefined) =>
    entry?.holder !== undefined && entry.holder.worker === w && entry.holder.token === token;

  return {
    channel: LOCK_CHANNEL,
    handle(worker, raw) {
      const msg = raw as LockRequest;
      const { key, rid } = msg;
      const entry: Entry = keys.get(key) ?? { fence: 0, holder: undefined, queue: [] };
      keys.set(key, entry);
      const ttlMs = msg.ttlMs;
      if (msg.op === 'acquire') {
        if (!entry.holder) {
          grant(key, entry, worker, rid, ttlMs);
          return;
        }
        const timer = setTimeout(() => {
          entry.queue = entry.queue.filter((q) => q.timer !== timer);
          send(worker, { op: 'timeout', rid, key });
        }, msg.waitMs ?? 0);
        entry.queue.push({ worker, rid, ttlMs, timer });
      } else if (msg.op === 'extend') {
        const ok = holds(entry, worker, msg.token);
        if (ok && entry.holder) {
          clearTimeout(entry.holder.timer);
          entry.holder.timer = expire(key, entry, ttlMs);
        }
        send(worker, { op: 'extended', rid, key, ok });
      } else if (msg.op === 'release') {
        const ok = holds(entry, worker, msg.token);
        if (ok && entry.holder) {
          clearTimeout(entry.holder.timer);
          entry.holder = undefined;
          grantNext(key, entry);
        }
        send(worker, { op: 'released', rid, key, ok });
      }
    },
    exited(worker) {
      for (const [key, entry] of keys) {
        entry.queue = entry.queue.filter((q) => {
          if (q.worker === worker) clearTimeout(q.timer);
          return q.worker !== worker;
        });
        if (entry.holder?.worker === worker) {
          clearTimeout(entry.holder.timer);
          entry.holder = undefined;
          grantNext(key, entry);
        }
      }
    },
    size() {
      let held = 0;
      let waiting = 0;
      for (const e of keys.values()) {
        if (e.holder) held++;
        waiting += e.queue.length;
      }
      return { held, waiting };
    },
  };
}
