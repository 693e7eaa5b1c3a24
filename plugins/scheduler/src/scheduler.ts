/**
 * The timer loop and the per-tick protocol. For each schedule one timer waits for the next tick;
 * when it fires, the process tries to run that tick:
 *
 *   1. take the lock `scheduler:<name>` (or `scheduler:<name>:<tick>` with `overlap`) without
 *      waiting: a process that finds it held skips the tick (another process runs this tick, or
 *      the previous run still holds it: an overlap);
 *   2. inside the lease, `claim` the tick in the tick store (compare-and-set on the last tick run,
 *      recording the lease's fencing token): a process whose clock lags and takes the lock after the
 *      winner released it finds the tick already claimed and skips it;
 *   3. run the schedule with a fresh ctx; the lease is extended while it runs (`ctx.lock.with`).
 *
 * A run never throws out of here: failures are logged with schedule, app and tick, and counted.
 */
import type { App, Logger, MegaContext } from '@mega/kernel';
import { isMegaError, MegaError } from '@mega/kernel';
import type { CronSpec } from './cron.js';
import { parseCron } from './cron.js';
import type { LoadedSchedule, ScheduleRun } from './schedule.js';
import type { TickStore } from './store.js';

/** What the scheduler needs of `ctx.lock` (a `LockManager` of @mega/lock). */
export interface LockLike {
  readonly driver: string;
  with<T>(
    key: string,
    options: { ttl?: number; waitMs?: number },
    fn: (scope: { token: number; signal: AbortSignal }) => Promise<T>,
  ): Promise<T>;
}

/** Time source; the default reads the globals at call time, so fake timers apply. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export type TickOutcome = 'ran' | 'failed' | 'taken' | 'overlap' | 'unavailable';

export interface ScheduleStats {
  app: string;
  name: string;
  cron: string;
  timezone: string | undefined;
  /** The next tick this process waits for (ISO), if armed. */
  next: string | undefined;
  ran: number;
  failed: number;
  /** Ticks another process ran (or claimed first). */
  taken: number;
  /** Ticks skipped because the previous run still held the schedule. */
  overlapped: number;
  /** Ticks skipped because the lock or the tick store did not answer. */
  unavailable: number;
  /** Ticks that passed while this process was late (event loop blocked, machine asleep). */
  missed: number;
  running: number;
}

interface Entry {
  app: App;
  schedule: LoadedSchedule;
  cron: CronSpec;
  lock: LockLike;
  store: TickStore;
  log: Logger;
  /** The last tick this process handled (ran, skipped or let pass). */
  cursor: number;
  next: number | undefined;
  timer: unknown;
  running: Set<Promise<unknown>>;
  stats: Omit<ScheduleStats, 'app' | 'name' | 'cron' | 'timezone' | 'next' | 'running'>;
}

export interface SchedulerOptions {
  log: Logger;
  createContext(app: App, init: { id: string; source: ScheduleRun }): MegaContext;
  /** Lease length of a run's lock (extended every third of it while the run goes on). */
  lockTtlMs: number;
  clock?: Clock;
  /** Awaited before a tick runs (the kernel finishing boot). */
  ready?: () => Promise<void>;
}

/** Longest single timer: setTimeout overflows past 2^31-1 ms, and a wall-clock jump is caught on the next wake. */
const MAX_DELAY_MS = 60 * 60 * 1000;

export class Scheduler {
  readonly #entries: Entry[] = [];
  readonly #opts: SchedulerOptions;
  readonly #clock: Clock;
  readonly #stop = new AbortController();
  #started = false;

  constructor(options: SchedulerOptions) {
    this.#opts = options;
    this.#clock = options.clock ?? systemClock;
  }

  get started(): boolean {
    return this.#started;
  }

  add(app: App, schedule: LoadedSchedule, lock: LockLike, store: TickStore): void {
    if (this.#entries.some((e) => e.app.name === app.name && e.schedule.name === schedule.name)) {
      throw new MegaError('scheduler.duplicate', `app ${app.name}: a schedule named "${schedule.name}" is already registered`);
    }
    this.#entries.push({
      app,
      schedule,
      cron: parseCron(schedule.cron, schedule.timezone),
      lock,
      store,
      log: this.#opts.log.child({ app: app.name }),
      cursor: 0,
      next: undefined,
      timer: undefined,
      running: new Set(),
      stats: { ran: 0, failed: 0, taken: 0, overlapped: 0, unavailable: 0, missed: 0 },
    });
  }

  get size(): number {
    return this.#entries.length;
  }

  /** Catches up what downtime missed (per `catchUp`), then arms every timer. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const now = this.#clock.now();
    await Promise.all(this.#entries.map((e) => this.#catchUp(e, now)));
    for (const e of this.#entries) {
      e.cursor = Math.max(e.cursor, now);
      this.#arm(e);
    }
  }

  /** Stops the timers, aborts the signal of runs in progress and waits for them to settle. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#stop.abort(new MegaError('scheduler.shutdown', 'the scheduler is shutting down'));
    for (const e of this.#entries) {
      if (e.timer !== undefined) this.#clock.clearTimeout(e.timer);
      e.timer = undefined;
      e.next = undefined;
    }
    await Promise.allSettled(this.#entries.flatMap((e) => [...e.running]));
  }

  stats(): ScheduleStats[] {
    return this.#entries.map((e) => ({
      app: e.app.name,
      name: e.schedule.name,
      cron: e.schedule.cron,
      timezone: e.schedule.timezone,
      next: e.next === undefined ? undefined : new Date(e.next).toISOString(),
      running: e.running.size,
      ...e.stats,
    }));
  }

  /** Runs one tick of a schedule through the whole protocol (lock, claim, run). Exposed for tests and tools. */
  runTick(app: string, name: string, tick: number, catchUp = false): Promise<TickOutcome> {
    const e = this.#entries.find((x) => x.app.name === app && x.schedule.name === name);
    if (!e) return Promise.reject(new MegaError('scheduler.not_found', `no schedule "${name}" in app "${app}"`));
    return this.#track(e, tick, catchUp);
  }

  async #catchUp(e: Entry, now: number): Promise<void> {
    let last: number | undefined;
    try {
      last = (await e.store.last(e.schedule.name))?.tick;
    } catch (error) {
      this.#log(e).error(
        { err: error },
        `schedule ${this.#label(e)}: could not read its last run (${(error as Error).message}); no catch-up`,
      );
      return;
    }
    if (last === undefined) return; // never ran anywhere (or a memory store after a restart)
    const missed = e.cron.latest(now);
    if (missed === undefined || missed <= last) return;
    if (e.schedule.catchUp === 'none') {
      this.#log(e).info(
        { schedule: e.schedule.name, lastTick: new Date(last).toISOString(), missedTick: new Date(missed).toISOString() },
        `schedule ${this.#label(e)}: ticks missed since ${new Date(last).toISOString()} are skipped (catchUp: none)`,
      );
      return;
    }
    this.#log(e).info(
      { schedule: e.schedule.name, lastTick: new Date(last).toISOString(), tick: new Date(missed).toISOString() },
      `schedule ${this.#label(e)}: catching up the last missed tick ${new Date(missed).toISOString()} (catchUp: last)`,
    );
    e.cursor = missed;
    void this.#track(e, missed, true);
  }

  #arm(e: Entry): void {
    if (!this.#started) return;
    const next = e.cron.next(e.cursor);
    e.next = next;
    if (next === undefined) return; // a pattern that ran out of dates
    const delay = Math.min(Math.max(next - this.#clock.now(), 0), MAX_DELAY_MS);
    e.timer = this.#clock.setTimeout(() => this.#fire(e), delay);
  }

  #fire(e: Entry): void {
    e.timer = undefined;
    if (!this.#started || e.next === undefined) return;
    const now = this.#clock.now();
    // Timers may wake a little early (or were capped at MAX_DELAY_MS): wait again for the same tick.
    if (now < e.next) {
      this.#arm(e);
      return;
    }
    const tick = e.cron.latest(now) ?? e.next;
    if (tick > e.next) {
      // Woke late (blocked loop, suspended host): the ticks in between are gone; run the latest.
      let n = 0;
      for (let t: number | undefined = e.next; t !== undefined && t < tick && n < 1_000_000; t = e.cron.next(t)) n++;
      e.stats.missed += n;
      this.#log(e).warn(
        { schedule: e.schedule.name, missed: n, tick: new Date(tick).toISOString() },
        `schedule ${this.#label(e)}: woke late, ${n} tick(s) missed`,
      );
    }
    e.cursor = tick;
    void this.#track(e, tick, false);
    this.#arm(e);
  }

  #track(e: Entry, tick: number, catchUp: boolean): Promise<TickOutcome> {
    const p = this.#tick(e, tick, catchUp);
    e.running.add(p);
    void p.finally(() => e.running.delete(p));
    return p;
  }

  async #tick(e: Entry, tick: number, catchUp: boolean): Promise<TickOutcome> {
    const { schedule } = e;
    const at = new Date(tick);
    const log = this.#log(e);
    const fields = { schedule: schedule.name, tick: at.toISOString() };
    // Another run of this schedule already going in this process: its lease makes this an overlap anyway.
    const localOverlap = !schedule.overlap && e.running.size > 0;
    if (this.#opts.ready) await this.#opts.ready();
    if (localOverlap) {
      e.stats.overlapped++;
      log.warn(
        fields,
        `schedule ${this.#label(e)}: tick ${at.toISOString()} skipped, the previous run is still going (set static overlap = true to allow)`,
      );
      return 'overlap';
    }
    const key = schedule.overlap ? `scheduler:${schedule.name}:${tick}` : `scheduler:${schedule.name}`;
    // Set inside the lease callback (a plain `let` would be narrowed to 'taken' by the compiler).
    const state: { outcome: TickOutcome } = { outcome: 'taken' };
    try {
      await e.lock.with(key, { ttl: this.#opts.lockTtlMs, waitMs: 0 }, async ({ token, signal }) => {
        if (!(await e.store.claim(schedule.name, tick, token))) return;
        const run: ScheduleRun = {
          name: schedule.name,
          app: e.app.name,
          tick: at,
          token,
          signal: AbortSignal.any([signal, this.#stop.signal]),
          catchUp,
        };
        const ctx = this.#opts.createContext(e.app, { id: `${schedule.name}@${at.toISOString()}`, source: run });
        const started = performance.now();
        state.outcome = 'failed';
        try {
          await schedule.run(ctx, run);
          state.outcome = 'ran';
          e.stats.ran++;
          log.debug({ ...fields, token, ms: Math.round(performance.now() - started) }, `schedule ${this.#label(e)} ran`);
        } catch (error) {
          e.stats.failed++;
          log.error(
            { ...fields, token, err: error, ms: Math.round(performance.now() - started) },
            `schedule ${this.#label(e)} failed at tick ${at.toISOString()}: ${(error as Error)?.message ?? String(error)}`,
          );
        }
      });
      if (state.outcome === 'taken') {
        e.stats.taken++;
        log.debug(fields, `schedule ${this.#label(e)}: tick ${at.toISOString()} already run elsewhere`);
      }
      return state.outcome;
    } catch (error) {
      const code = isMegaError(error) ? error.code : undefined;
      if (code === 'lock.timeout') {
        // Held: another process runs this tick, or the previous run (anywhere) still holds it.
        e.stats.taken++;
        log.debug(fields, `schedule ${this.#label(e)}: tick ${at.toISOString()} skipped, the schedule's lock is held elsewhere`);
        return 'taken';
      }
      if (state.outcome === 'ran' || state.outcome === 'failed') {
        // The run finished but the lease was lost meanwhile (lock.lost): another process may have run too.
        log.error(
          { ...fields, err: error },
          `schedule ${this.#label(e)}: the lock was lost during the run at ${at.toISOString()}: ${(error as Error).message}`,
        );
        return state.outcome;
      }
      e.stats.unavailable++;
      log.error(
        { ...fields, err: error },
        `schedule ${this.#label(e)}: tick ${at.toISOString()} not run, the lock or tick store failed: ${(error as Error)?.message ?? String(error)}`,
      );
      return 'unavailable';
    }
  }

  #label(e: Entry): string {
    return `${e.app.name}/${e.schedule.name}`;
  }

  #log(e: Entry): Logger {
    return e.log;
  }
}
