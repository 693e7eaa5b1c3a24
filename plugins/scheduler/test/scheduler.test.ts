/**
 * The scheduler with fake timers: one run per tick across two schedulers sharing a lock and a tick
 * record (two processes, modelled), clock skew, overlap, failures, waking late and catch-up.
 */
import type { App, MegaContext } from '@mega/kernel';
import { captureLogs } from '@mega/testing';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryLockDriver } from '../../lock/src/drivers/memory.js';
import { LockManager } from '../../lock/src/lock.js';
import { parseCron } from '../src/cron.js';
import { toSchedule } from '../src/loader.js';
import type { ScheduleRun } from '../src/schedule.js';
import { defineSchedule, MegaSchedule } from '../src/schedule.js';
import type { Clock } from '../src/scheduler.js';
import { Scheduler, systemClock } from '../src/scheduler.js';
import { MemoryTickStore } from '../src/store.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 0);
const app = { name: 'shop' } as App;

function setup(options: { clock?: Clock; logs?: ReturnType<typeof captureLogs> } = {}) {
  const logs = options.logs ?? captureLogs('debug');
  const scheduler = new Scheduler({
    log: logs.logger,
    lockTtlMs: 5000,
    createContext: (a, init) => ({ app: a, id: init.id, source: init.source, log: logs.logger }) as unknown as MegaContext,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  return { scheduler, logs };
}

function sharedLock(logs = captureLogs('debug')) {
  return new LockManager(new MemoryLockDriver(), { prefix: 'shop:', log: logs.logger, ttlMs: 5000, waitMs: 0 });
}

function schedule(def: Parameters<typeof defineSchedule>[0]) {
  const s = toSchedule(def.name ?? 'S', defineSchedule(def), 'apps/shop/schedules/s.ts');
  if (!s) throw new Error('not a schedule');
  return s;
}

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('parseCron (croner)', () => {
  it('reads 5 fields, 6 with seconds, and time zones', () => {
    expect(parseCron('*/5 * * * *').next(T0 + 1)).toBe(T0 + 5 * 60_000);
    expect(parseCron('* * * * * *').next(T0)).toBe(T0 + 1000);
    expect(parseCron('*/10 * * * * *').latest(T0 + 25_000)).toBe(T0 + 20_000);
    expect(parseCron('*/10 * * * * *').latest(T0 + 20_000)).toBe(T0 + 20_000);
    // 09:00 in Paris is 08:00 UTC in January.
    expect(new Date(parseCron('0 9 * * *', 'Europe/Paris').next(T0) as number).toISOString()).toBe('2026-01-02T08:00:00.000Z');
  });

  it('refuses bad patterns, 7 fields, unknown zones and patterns that never match', () => {
    for (const bad of ['61 * * * *', '* * *', '* * * * * * *', '', 'every minute', '0 0 30 2 *']) expect(() => parseCron(bad)).toThrow();
    expect(() => parseCron('* * * * *', 'Mars/Olympus')).toThrow(/time zone/i);
  });
});

describe('Scheduler', () => {
  it('two schedulers sharing a lock and a tick record run each tick exactly once, even with skewed clocks', async () => {
    const logs = captureLogs('debug');
    const lock = sharedLock(logs);
    const store = new MemoryTickStore();
    const runs: Array<{ who: string; tick: number; token: number }> = [];
    const mk = (who: string, skewMs: number) => {
      const clock: Clock = { ...systemClock, now: () => Date.now() + skewMs };
      const { scheduler } = setup({ clock, logs });
      const s = schedule({
        name: 'tick',
        cron: '* * * * * *',
        run: async (_ctx, run: ScheduleRun) => {
          runs.push({ who, tick: run.tick.getTime(), token: run.token });
          await new Promise((r) => setTimeout(r, 50));
        },
      });
      scheduler.add(app, s, lock, store);
      return scheduler;
    };
    // B's clock runs 300 ms late: it takes the lock after A released it and must find the tick claimed.
    vi.setSystemTime(T0 + 500);
    const a = mk('a', 0);
    const b = mk('b', -300);
    await a.start();
    await b.start();
    await vi.advanceTimersByTimeAsync(10_000);
    await a.stop();
    await b.stop();
    const ticks = runs.map((r) => r.tick);
    expect(ticks).toEqual(Array.from({ length: 10 }, (_, i) => T0 + (i + 1) * 1000));
    expect(new Set(ticks).size).toBe(10);
    const stats = [...a.stats(), ...b.stats()];
    expect(stats.reduce((n, s) => n + s.ran, 0)).toBe(10);
    expect(stats.reduce((n, s) => n + s.taken, 0)).toBe(10);
    // Fencing tokens strictly increase from run to run.
    expect(runs.every((r, i) => i === 0 || r.token > (runs[i - 1]?.token ?? 0))).toBe(true);
  });

  it('skips a tick while the previous run is going, unless overlap is set', async () => {
    const lock = sharedLock();
    const { scheduler, logs } = setup();
    const slow: number[] = [];
    const overlapping: number[] = [];
    scheduler.add(
      app,
      schedule({
        name: 'slow',
        cron: '* * * * * *',
        run: async (_c, r) => {
          slow.push(r.tick.getTime());
          await new Promise((ok) => setTimeout(ok, 2500));
        },
      }),
      lock,
      new MemoryTickStore(),
    );
    scheduler.add(
      app,
      schedule({
        name: 'wide',
        cron: '* * * * * *',
        overlap: true,
        run: async (_c, r) => {
          overlapping.push(r.tick.getTime());
          await new Promise((ok) => setTimeout(ok, 2500));
        },
      }),
      lock,
      new MemoryTickStore(),
    );
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(6_100);
    // Ticks 1..6: slow runs at 1 (busy until 3.5), 4 (busy until 6.5); 2, 3, 5, 6 are skipped.
    expect(slow).toEqual([T0 + 1000, T0 + 4000]);
    expect(overlapping).toHaveLength(6);
    const slowStats = scheduler.stats().find((s) => s.name === 'slow');
    expect(slowStats).toMatchObject({ ran: 1, overlapped: 4, running: 1 });
    expect(
      logs.find((l) => l.level === 40 && /shop\/slow: tick .* skipped, the previous run is still going/.test(String(l.msg))),
    ).toHaveLength(4);
    // stop() waits for the runs in progress (they ignore the abort signal here).
    const stopped = scheduler.stop();
    await vi.advanceTimersByTimeAsync(3000);
    await stopped;
  });

  it('logs a failing run with schedule and tick, keeps going, and a class schedule works the same', async () => {
    let n = 0;
    class Flaky extends MegaSchedule {
      static override cron = '*/2 * * * * *';
      async run(_ctx: MegaContext, run: ScheduleRun) {
        n++;
        if (n === 1) throw new Error(`boom at ${run.tick.toISOString()}`);
      }
    }
    const s = toSchedule('Flaky', Flaky, 'apps/shop/schedules/flaky.ts');
    expect(s).toMatchObject({ name: 'Flaky', cron: '*/2 * * * * *', catchUp: 'none', overlap: false });
    const { scheduler, logs } = setup();
    scheduler.add(app, s as NonNullable<typeof s>, sharedLock(), new MemoryTickStore());
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(6_100);
    await scheduler.stop();
    expect(n).toBe(3);
    const failed = logs.find((l) => l.level === 50 && l.schedule === 'Flaky');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ tick: new Date(T0 + 2000).toISOString(), app: 'shop' });
    expect(String(failed[0]?.msg)).toContain('schedule shop/Flaky failed at tick 2026-01-01T12:00:02.000Z: boom');
    expect(scheduler.stats()[0]).toMatchObject({ ran: 2, failed: 1 });
  });

  it('a late wake-up runs only the latest due tick and counts the missed ones', async () => {
    let now = T0;
    const timers: Array<() => void> = [];
    const clock: Clock = { now: () => now, setTimeout: (fn) => timers.push(fn), clearTimeout: () => undefined };
    const { scheduler } = setup({ clock });
    const ticks: number[] = [];
    scheduler.add(
      app,
      schedule({ name: 'm', cron: '* * * * * *', run: (_c, r) => void ticks.push(r.tick.getTime()) }),
      sharedLock(),
      new MemoryTickStore(),
    );
    await scheduler.start();
    now = T0 + 5_500; // the loop was blocked for 5.5 s
    timers.shift()?.();
    await vi.advanceTimersByTimeAsync(10);
    expect(ticks).toEqual([T0 + 5000]);
    expect(scheduler.stats()[0]).toMatchObject({ missed: 4, ran: 1, next: new Date(T0 + 6000).toISOString() });
    await scheduler.stop();
  });

  it('catchUp: last runs the latest missed tick once at start; none skips; nothing without a record', async () => {
    const store = new MemoryTickStore();
    const lastRun = T0 - 10 * 60_000; // last run 10 minutes ago, then downtime
    await store.claim('last', lastRun, 1);
    await store.claim('none', lastRun, 1);
    vi.setSystemTime(T0 + 30_000); // 12:00:30
    const { scheduler, logs } = setup();
    const seen: Array<{ name: string; tick: string; catchUp: boolean }> = [];
    const run = (_c: MegaContext, r: ScheduleRun) => void seen.push({ name: r.name, tick: r.tick.toISOString(), catchUp: r.catchUp });
    const lock = sharedLock();
    scheduler.add(app, schedule({ name: 'last', cron: '* * * * *', catchUp: 'last', run }), lock, store);
    scheduler.add(app, schedule({ name: 'none', cron: '* * * * *', catchUp: 'none', run }), lock, store);
    scheduler.add(app, schedule({ name: 'fresh', cron: '* * * * *', catchUp: 'last', run }), lock, store);
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(10);
    expect(seen).toEqual([{ name: 'last', tick: '2026-01-01T12:00:00.000Z', catchUp: true }]);
    expect(logs.find(/ticks missed since .* are skipped \(catchUp: none\)/)).toHaveLength(1);
    // The next regular tick runs for all three.
    await vi.advanceTimersByTimeAsync(30_000);
    expect(seen.slice(1).map((s) => `${s.name}@${s.tick}:${s.catchUp}`)).toEqual([
      'last@2026-01-01T12:01:00.000Z:false',
      'none@2026-01-01T12:01:00.000Z:false',
      'fresh@2026-01-01T12:01:00.000Z:false',
    ]);
    // A second scheduler starting now finds nothing missed (the record is current).
    const second = setup().scheduler;
    second.add(app, schedule({ name: 'last', cron: '* * * * *', catchUp: 'last', run }), lock, store);
    await second.start();
    await vi.advanceTimersByTimeAsync(10);
    expect(seen).toHaveLength(4);
    await second.stop();
    await scheduler.stop();
  });

  it('stop() aborts the signal of runs in progress and waits for them', async () => {
    const { scheduler } = setup();
    let aborted: unknown;
    scheduler.add(
      app,
      schedule({
        name: 'long',
        cron: '* * * * * *',
        run: (_c, r) =>
          new Promise<void>((ok) =>
            r.signal.addEventListener('abort', () => {
              aborted = r.signal.reason;
              ok();
            }),
          ),
      }),
      sharedLock(),
      new MemoryTickStore(),
    );
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(1_010);
    expect(scheduler.stats()[0]?.running).toBe(1);
    await scheduler.stop();
    expect(aborted).toMatchObject({ code: 'scheduler.shutdown' });
    expect(scheduler.stats()[0]?.running).toBe(0);
  });

  it('a lock backend failure is logged and the tick counted as unavailable, never thrown', async () => {
    const { scheduler, logs } = setup();
    const broken = {
      driver: 'redis',
      with: () => Promise.reject(Object.assign(new Error('redis down'), { code: 'lock.unavailable' })),
    };
    scheduler.add(app, schedule({ name: 'x', cron: '* * * * * *', run: () => undefined }), broken, new MemoryTickStore());
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(2_010);
    await scheduler.stop();
    expect(scheduler.stats()[0]).toMatchObject({ ran: 0, unavailable: 2 });
    expect(
      logs.find((l) => l.level === 50 && /shop\/x: tick .* not run, the lock or tick store failed: redis down/.test(String(l.msg))),
    ).toHaveLength(2);
  });
});
