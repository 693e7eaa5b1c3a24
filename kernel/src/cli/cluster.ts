/**
 * Cluster primary for `mega start --workers N`: forks N workers that share the listen socket,
 * replaces a crashed worker with exponential backoff, and on SIGTERM/SIGINT asks every worker to
 * drain, waits for them, and exits 0. A second signal kills the workers and exits 130.
 */

import type { Worker } from 'node:cluster';
import cluster from 'node:cluster';
import type { PrimaryHandler } from '../plugin.js';
import type { CliIO } from './io.js';

export interface PrimaryOptions {
  workers: number;
  io: CliIO;
  /** The cluster-primary halves of the project's plugins (bus relay, lock table, ...). */
  handlers?: readonly PrimaryHandler[];
  /** How long workers get to drain before SIGKILL. */
  drainTimeoutMs?: number;
}

const MAX_BACKOFF_MS = 10_000;
/** A worker that lived this long resets its slot's backoff. */
const STABLE_AFTER_MS = 10_000;
/** Workers failing this many times in a row before ever becoming ready mean a broken project. */
const MAX_BOOT_FAILURES = 5;

export function runPrimary(options: PrimaryOptions): Promise<number> {
  const { io, workers } = options;
  const drainTimeoutMs = options.drainTimeoutMs ?? Number(process.env.MEGA_DRAIN_TIMEOUT_MS ?? 30_000);
  const log = (msg: string) => io.stdout(`[mega primary ${process.pid}] ${msg}`);
  let stopping = false;
  let bootFailures = 0;
  const slots = new Map<number, { worker: Worker; started: number; backoff: number; ready: boolean }>();
  // Plugins' primary halves, by message channel (e.g. the bus relay and the lock table).
  const handlers = new Map((options.handlers ?? []).map((h) => [h.channel, h]));

  return new Promise<number>((resolve) => {
    const fork = (slot: number, backoff: number) => {
      const worker = cluster.fork({ MEGA_WORKER_SLOT: String(slot) });
      slots.set(slot, { worker, started: Date.now(), backoff, ready: false });
      worker.on('message', (msg: { type?: string; ms?: number }) => {
        const handler = msg?.type === undefined ? undefined : handlers.get(msg.type);
        if (handler) handler.handle(worker, msg);
        else if (msg?.type === 'mega:ready') {
          const entry = slots.get(slot);
          if (entry) entry.ready = true;
          bootFailures = 0;
          log(`worker ${slot} ready pid=${worker.process.pid} in ${msg.ms} ms`);
        }
      });
      worker.on('exit', (code, signal) => {
        for (const h of handlers.values()) h.exited?.(worker);
        const entry = slots.get(slot);
        if (stopping || entry?.worker !== worker) return;
        if (!entry.ready && ++bootFailures >= MAX_BOOT_FAILURES) {
          log(`workers failed to boot ${bootFailures} times in a row; giving up`);
          stopping = true;
          for (const s of slots.values()) s.worker.process.kill('SIGKILL');
          resolve(1);
          return;
        }
        const lived = Date.now() - entry.started;
        const next = lived > STABLE_AFTER_MS ? 100 : Math.min(entry.backoff * 2, MAX_BACKOFF_MS);
        log(`worker ${slot} pid=${worker.process.pid} exited (${signal ?? `code ${code}`}); replacing in ${next} ms`);
        // Not unref'd: when every worker has died this timer is all that keeps the primary alive
        // (unref'd, the primary exited 0 right after the first failed boots instead of retrying and
        // giving up with exit 1). `mega start` calls process.exit once this promise resolves.
        setTimeout(() => {
          if (!stopping) fork(slot, next);
        }, next);
      });
    };

    const shutdown = (signal: NodeJS.Signals) => {
      if (stopping) {
        log(`second ${signal}: killing workers`);
        for (const s of slots.values()) s.worker.process.kill('SIGKILL');
        resolve(130);
        return;
      }
      stopping = true;
      log(`${signal} received: draining ${slots.size} workers`);
      const alive = [...slots.values()].map((s) => s.worker).filter((w) => !w.isDead());
      let left = alive.length;
      if (left === 0) resolve(0);
      const timer = setTimeout(() => {
        log(`drain timeout after ${drainTimeoutMs} ms: killing remaining workers`);
        for (const w of alive) if (!w.isDead()) w.process.kill('SIGKILL');
      }, drainTimeoutMs);
      let failed = false;
      for (const w of alive) {
        w.once('exit', (code, sig) => {
          if (code !== 0 || sig) failed = true;
          if (--left === 0) {
            clearTimeout(timer);
            log(failed ? 'workers stopped (some did not exit cleanly)' : 'all workers stopped');
            resolve(0);
          }
        });
        w.send({ type: 'mega:shutdown' });
      }
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));

    log(`starting ${workers} workers`);
    for (let slot = 1; slot <= workers; slot++) fork(slot, 100);
  });
}
