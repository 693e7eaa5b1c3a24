/**
 * The per-app lock manager (`ctx.lock`): local FIFO queues per key in front of a backend, leases
 * with fencing tokens and AbortSignals, auto-extension inside `with`, loss detection, stats.
 *
 * Within a process only the head waiter of a key talks to the backend, so waiters are served in
 * arrival order and a busy key costs one backend call in flight, not one per waiter.
 */
import { randomBytes } from 'node:crypto';
import type { MegaTracer, OpStatsSnapshot } from '@mega/adapters';
import { errorSummary, OpStats } from '@mega/adapters';
import type { Logger } from '@mega/kernel';
import { MegaError } from '@mega/kernel';
import type { LockDriver } from './driver.js';
import type { RedisLockDriver } from './drivers/redis.js';

export interface LockOptions {
  /** Lease length in ms (auto-extended inside `with`). Default: the app's `lock.ttlMs` (10000). */
  ttl?: number;
  /** How long to wait for the key in ms; 0 tries once. Default: the app's `lock.waitMs` (5000). */
  waitMs?: number;
}

export interface Lease {
  readonly key: string;
  /** Fencing token: strictly increasing per key. Hand it to the resource so it can refuse stale holders. */
  readonly token: number;
  /** Aborts (reason: a `lock.lost` MegaError) when the lease is lost. */
  readonly signal: AbortSignal;
  /** `Date.now()` until which the lease is known valid. */
  readonly validUntil: number;
  readonly lost: boolean;
}

export interface LockScope {
  token: number;
  signal: AbortSignal;
  lease: Lease;
}

export interface LockStats {
  driver: LockDriver['driver'];
  prefix: string;
  acquired: number;
  released: number;
  extended: number;
  timeouts: number;
  lost: number;
  errors: number;
  /** Leases held now by this app in this process. */
  held: number;
  /** Local waiters queued now. */
  waiting: number;
  /** Acquisitions (including the wait) and their latency. */
  acquire: OpStatsSnapshot;
  /** Released leases and how long they were held (errors: leases found lost). */
  hold: OpStatsSnapshot;
}

/** Owner ids: random per process + a counter (short: they travel with every Redis call). */
const PROCESS_ID = randomBytes(6).toString('base64url');
let ownerSeq = 0;

/**
 * A held lease. Its AbortController, and the timer that aborts it when the lease runs out, are made
 * on first use of `signal`: most callers never look, and a timer per lease is measurable at
 * thousands of locks per second. Loss is still detected without them (failed extensions, release).
 */
class LeaseState implements Lease {
  timer: NodeJS.Timeout | undefined = undefined;
  validUntil = 0;
  lost = false;
  released = false;
  /** performance.now() when granted: hold times for stats. */
  readonly grantedAt = performance.now();
  watched: (() => void) | undefined = undefined;
  #controller: AbortController | undefined;
  #reason: MegaError | undefined;

  constructor(
    readonly key: string,
    readonly token: number,
    readonly owner: string,
    public ttlMs: number,
  ) {}

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#reason) this.#controller.abort(this.#reason);
      else this.watched?.();
    }
    return this.#controller.signal;
  }

  get observed(): boolean {
    return this.#controller !== undefined;
  }

  abort(reason: MegaError): void {
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

interface KeyQueue {
  busy: boolean;
  waiters: Array<{ go: () => void; deadline: number }>;
}

/** Lease validity keeps a margin for clock drift and the round trip (Redlock: 1% + 2 ms). */
const drift = (ttlMs: number) => Math.floor(ttlMs * 0.01) + 2;

export class LockManager {
  readonly prefix: string;
  readonly #driver: LockDriver;
  readonly #log: Logger;
  readonly #ttlMs: number;
  readonly #waitMs: number;
  readonly #queues = new Map<string, KeyQueue>();
  readonly #leases = new Map<string, LeaseState>();
  readonly #acquire = new OpStats();
  readonly #hold = new OpStats();
  #acquired = 0;
  #released = 0;
  #extended = 0;
  #timeouts = 0;
  #lost = 0;
  #errors = 0;
  #waiting = 0;

  /** The `tracing` service when @mega/tracing is loaded: a span per acquire (the wait included). */
  readonly #tracer: MegaTracer | undefined;

  constructor(
    driver: LockDriver,
    options: { prefix: string; log: Logger; ttlMs: number; waitMs: number; tracer?: MegaTracer | undefined },
  ) {
    this.#driver = driver;
    this.#tracer = options.tracer;
    this.prefix = options.prefix;
    this.#log = options.log;
    this.#ttlMs = options.ttlMs;
    this.#waitMs = options.waitMs;
  }

  get driver(): LockDriver['driver'] {
    return this.#driver.driver;
  }

  /** The backend handle (the ioredis client for redis). */
  get native(): unknown {
    return this.#driver.native;
  }

  /** Called by the driver's loss reports (memory/cluster expiry). */
  driverLost(fullKey: string, token: number): void {
    const lease = this.#leases.get(fullKey);
    if (lease && lease.token === token) this.#markLost(lease, 'its TTL ran out before it was extended');
  }

  /**
   * Runs `fn` holding `key`: the lease is extended every ttl/3 while `fn` runs and released after.
   * If the lease is lost meanwhile, `signal` aborts and `with` rejects with `lock.lost` once `fn`
   * settles. `waitMs` exceeded -> `lock.timeout`.
   */
  async with<T>(key: string, options: LockOptions, fn: (scope: LockScope) => Promise<T> | T): Promise<T> {
    const lease = (await this.acquire(key, options)) as LeaseState;
    const every = Math.max(10, Math.floor(lease.ttlMs / 3));
    const timer = setInterval(() => {
      if (lease.lost || lease.released) return;
      this.extend(lease).catch((error: unknown) => {
        if (lease.lost) return;
        if (Date.now() >= lease.validUntil) this.#markLost(lease, `it could not be extended within its ${lease.ttlMs} ms TTL`);
        else this.#log.warn({ err: errorSummary(error), key }, `lock "${key}": extension failed (${(error as Error).message}); retrying`);
      });
    }, every);
    let result: T;
    try {
      result = await fn({
        token: lease.token,
        lease,
        get signal() {
          return lease.signal;
        },
      });
    } catch (error) {
      clearInterval(timer);
      await this.release(lease).catch(() => undefined);
      throw error;
    }
    clearInterval(timer);
    await this.release(lease);
    return result;
  }

  /**
   * Takes `key`; remember to `release` the lease. Written with explicit promise chains rather than
   * nested async functions: each layer of `await` is a hop between the Redis reply and the next
   * command, and at thousands of locks per second they show.
   */
  acquire(key: string, options: LockOptions = {}): Promise<Lease> {
    if (this.#tracer) {
      const attributes = { 'mega.lock.key': key, 'mega.lock.driver': this.#driver.driver };
      return this.#tracer.run('lock.acquire', 'internal', attributes, () => this.#take(key, options));
    }
    return this.#take(key, options);
  }

  #take(key: string, options: LockOptions): Promise<Lease> {
    const ttlMs = options.ttl ?? this.#ttlMs;
    const waitMs = options.waitMs ?? this.#waitMs;
    if (!(Number.isInteger(ttlMs) && ttlMs > 0) || !(Number.isFinite(waitMs) && waitMs >= 0)) {
      return Promise.reject(
        new MegaError('lock.invalid_options', `lock "${key}": ttl must be a positive integer and waitMs >= 0 (got ${ttlMs}, ${waitMs})`, {
          details: { key, ttl: ttlMs, waitMs },
        }),
      );
    }
    const fullKey = this.prefix + key;
    const started = performance.now();
    const deadline = started + waitMs;
    const failed = (error: unknown): never => {
      this.#acquire.record(performance.now() - started, true);
      if ((error as MegaError).code !== 'lock.timeout') this.#errors++;
      throw error;
    };
    const take = (): Promise<Lease> => {
      const owner = `${PROCESS_ID}.${(++ownerSeq).toString(36)}`;
      return this.#driver.acquire(fullKey, owner, ttlMs, Math.max(0, deadline - performance.now())).then(
        (grant) => {
          if (grant === undefined) {
            this.#next(fullKey, false);
            return failed(this.#timeout(key, waitMs));
          }
          // Validity from the round trip that took the key (grant.sentAt), never from the start of
          // the wait: a waiter that retried for about a ttl was otherwise born expired.
          const lease = this.#lease(key, fullKey, owner, grant.token, ttlMs, grant.sentAt);
          this.#acquire.record(performance.now() - started, false);
          this.#acquired++;
          return lease;
        },
        (error: unknown) => {
          this.#next(fullKey, false);
          return failed(error);
        },
      );
    };
    const turn = this.#turn(fullKey, deadline, key, waitMs);
    return turn ? turn.then(take, failed) : take();
  }

  /** Extends the lease to `ttl` (default: its own) from now; `lock.lost` if it is no longer held. */
  async extend(lease: Lease, ttl?: number): Promise<void> {
    const state = lease as LeaseState;
    if (state.lost) throw lostError(state.key, state.token);
    const ttlMs = ttl ?? state.ttlMs;
    const sent = performance.now();
    let ok: boolean;
    try {
      ok = await this.#driver.extend(this.prefix + state.key, state.owner, state.token, ttlMs);
    } catch (error) {
      this.#errors++;
      throw error;
    }
    if (state.lost) throw lostError(state.key, state.token);
    if (!ok) {
      this.#markLost(state, 'another holder has it or it expired');
      throw lostError(state.key, state.token);
    }
    this.#extended++;
    state.ttlMs = ttlMs;
    this.#arm(state, sent);
  }

  /** Releases the lease; `lock.lost` if it had been lost (the work ran without the lock). */
  release(lease: Lease): Promise<void> {
    const state = lease as LeaseState;
    if (state.released) return Promise.resolve();
    state.released = true;
    this.#hold.record(performance.now() - state.grantedAt, state.lost);
    clearTimeout(state.timer);
    const fullKey = this.prefix + state.key;
    if (this.#leases.get(fullKey) === state) this.#leases.delete(fullKey);
    if (state.lost) {
      // The local queue already moved on (#markLost). The backend may still hold the key for this
      // owner (loss is judged conservatively, before the TTL really ran out): free it, owner-checked,
      // so the next holder does not wait out a full TTL.
      this.#driver.release(fullKey, state.owner, state.token).catch(() => undefined);
      return Promise.reject(lostError(state.key, state.token));
    }
    return this.#driver.release(fullKey, state.owner, state.token).then(
      (result) => {
        this.#next(fullKey, result === 2);
        if (result !== 0) {
          this.#released++;
          return;
        }
        this.#markLost(state, 'it had expired or been taken when released');
        throw lostError(state.key, state.token);
      },
      (error: unknown) => {
        // The lease expires on its own; the work itself ran under a valid lease.
        this.#errors++;
        this.#log.warn(
          { err: errorSummary(error), key: state.key },
          `lock "${state.key}": release failed (${(error as Error).message}); it expires by its TTL`,
        );
        this.#next(fullKey, false);
      },
    );
  }

  stats(): LockStats {
    return {
      driver: this.#driver.driver,
      prefix: this.prefix,
      acquired: this.#acquired,
      released: this.#released,
      extended: this.#extended,
      timeouts: this.#timeouts,
      lost: this.#lost,
      errors: this.#errors,
      held: this.#leases.size,
      waiting: this.#waiting,
      acquire: this.#acquire.snapshot(),
      hold: this.#hold.snapshot(),
    };
  }

  /** Waits until this caller is the head of the key's local queue (undefined: it is already). */
  #turn(fullKey: string, deadline: number, key: string, waitMs: number): Promise<void> | undefined {
    const queue: KeyQueue = this.#queues.get(fullKey) ?? { busy: false, waiters: [] };
    this.#queues.set(fullKey, queue);
    if (!queue.busy) {
      queue.busy = true;
      return undefined;
    }
    const q = queue;
    this.#waiting++;
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        deadline,
        go: () => {
          clearTimeout(timer);
          this.#waiting--;
          resolve();
        },
      };
      const timer = setTimeout(
        () => {
          q.waiters.splice(q.waiters.indexOf(waiter), 1);
          this.#waiting--;
          reject(this.#timeout(key, waitMs));
        },
        Math.max(0, deadline - performance.now()),
      );
      q.waiters.push(waiter);
    });
  }

  /** Hands the key to the next local waiter (after a pause when another process is waiting too). */
  #next(fullKey: string, contended: boolean): void {
    const queue = this.#queues.get(fullKey);
    if (!queue) return;
    if (queue.waiters.length === 0) {
      this.#queues.delete(fullKey);
      return;
    }
    const pause = contended && this.#driver.driver === 'redis' ? (this.#driver as RedisLockDriver).yieldMs : 0;
    const handOff = () => {
      const next = queue.waiters.shift();
      if (next) next.go();
      else {
        queue.busy = false;
        this.#queues.delete(fullKey);
      }
    };
    if (pause > 0) setTimeout(handOff, pause);
    else handOff();
  }

  #lease(key: string, fullKey: string, owner: string, token: number, ttlMs: number, sent: number): LeaseState {
    const state = new LeaseState(key, token, owner, ttlMs);
    state.watched = () => this.#arm(state, undefined);
    this.#leases.set(fullKey, state);
    this.#arm(state, sent);
    return state;
  }

  /**
   * Sets the validity from `sent` (when the acquire/extend request left) and, once the lease's
   * signal is observed, (re)starts the timer that reports the loss when it runs out.
   */
  #arm(state: LeaseState, sent: number | undefined): void {
    if (sent !== undefined) state.validUntil = Date.now() + state.ttlMs - drift(state.ttlMs) - (performance.now() - sent);
    if (!state.observed || state.lost || state.released) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(
      () => this.#markLost(state, `it was not extended within its ${state.ttlMs} ms TTL`),
      Math.max(0, state.validUntil - Date.now()),
    );
  }

  #markLost(state: LeaseState, why: string): void {
    if (state.lost) return;
    state.lost = true;
    clearTimeout(state.timer);
    this.#lost++;
    const error = lostError(state.key, state.token, why);
    this.#log.error({ key: state.key, token: state.token }, error.message);
    state.abort(error);
    // Let the next local waiter try: the backend no longer holds the key for this lease.
    const fullKey = this.prefix + state.key;
    if (!state.released && this.#leases.get(fullKey) === state) {
      this.#leases.delete(fullKey);
      this.#next(fullKey, false);
    }
  }

  #timeout(key: string, waitMs: number): MegaError {
    this.#timeouts++;
    return new MegaError('lock.timeout', `lock "${key}" was not acquired within ${waitMs} ms`, { details: { key, waitMs } });
  }
}

const lostError = (key: string, token: number, why?: string) =>
  new MegaError('lock.lost', `lock "${key}" (token ${token}) was lost${why ? `: ${why}` : ''}`, { details: { key, token } });
