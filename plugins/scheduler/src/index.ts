/**
 * @mega/scheduler: cron schedules from each app's `schedules/` directory, run exactly once per tick
 * across every process that schedules (the app's lock from @mega/lock + a tick record), with
 * catch-up after downtime, in process under `mega start` or alone under `mega scheduler`.
 */
import type { App, ConfigInput, Static } from '@mega/kernel';
import { definePlugin, packageVersion, Type } from '@mega/kernel';
import type { LockManager } from '@mega/lock';
import { isDedicated, schedulerCommand } from './command.js';
import { scheduleGenerator } from './generators.js';
import { loadSchedules } from './loader.js';
import { Scheduler } from './scheduler.js';
import type { RedisLike, TickStore } from './store.js';
import { MemoryTickStore, RedisTickStore } from './store.js';

export type { CronSpec } from './cron.js';
export { parseCron } from './cron.js';
export { loadSchedules, toSchedule } from './loader.js';
export type { CatchUp, LoadedSchedule, ScheduleClass, ScheduleDefinition, ScheduleOptions, ScheduleRun } from './schedule.js';
export { defineSchedule, MegaSchedule } from './schedule.js';
export type { Clock, LockLike, SchedulerOptions, ScheduleStats, TickOutcome } from './scheduler.js';
export { Scheduler, systemClock } from './scheduler.js';
export type { RedisLike, TickRecord, TickStore } from './store.js';
export { CLAIM_LUA, MemoryTickStore, RedisTickStore } from './store.js';

const LOCK = '@mega/lock';

/** `scheduler` in mega.config.ts. */
export const SchedulerGlobalConfig = Type.Object({
  scheduler: Type.Object(
    {
      /** Run the schedules inside `mega start` (false: only `mega scheduler` runs them). */
      inProcess: Type.Boolean({ default: true }),
      /** Lease of a run's lock (ms); extended every third of it while the run goes on. */
      lockTtlMs: Type.Integer({ minimum: 100, default: 30_000 }),
    },
    { additionalProperties: false, default: {} },
  ),
});

/** `schedulesDir` in apps/<name>/app.config.ts. */
export const SchedulerAppConfig = Type.Object({
  /** Directory of the app's schedule files, relative to the app. */
  schedulesDir: Type.String({ minLength: 1, default: 'schedules' }),
});

export type SchedulerConfig = Static<typeof SchedulerGlobalConfig>['scheduler'];

declare module '@mega/kernel' {
  interface MegaConfig {
    scheduler?: ConfigInput<typeof SchedulerGlobalConfig>['scheduler'];
  }
  interface AppConfig {
    schedulesDir?: ConfigInput<typeof SchedulerAppConfig>['schedulesDir'];
  }
  interface MegaServices {
    /** Every schedule of every app, its stats, `runTick` for tools. */
    scheduler: Scheduler;
  }
}

/** The tick record beside the app's locks: Redis when the lock is, else this process's memory. */
function storeFor(lock: LockManager): TickStore {
  if (lock.driver === 'redis') return new RedisTickStore(lock.native as RedisLike, lock.prefix.replace(/^mega:lock:/, 'mega:scheduler:'));
  return new MemoryTickStore();
}

export default definePlugin({
  name: '@mega/scheduler',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: [LOCK],
  config: { global: SchedulerGlobalConfig, app: SchedulerAppConfig },
  generators: { schedule: scheduleGenerator },
  commands: {
    scheduler: { summary: 'run the schedules of the project without serving HTTP', run: schedulerCommand },
  },
  setup(api, config) {
    const { kernel } = api;
    const dedicated = isDedicated();
    const enabled = dedicated || (kernel.serving && config.scheduler.inProcess);
    const scheduler = new Scheduler({
      log: api.log,
      lockTtlMs: config.scheduler.lockTtlMs,
      createContext: (app, init) => kernel.createContext(app, init),
      // Runs wait for boot to finish, so getApp() and every ctx member work inside them.
      ready: async () => {
        while (kernel.state === 'setup' || kernel.state === 'booting') await new Promise((r) => setTimeout(r, 5));
      },
    });
    api.provide('scheduler', scheduler);

    // Load and check every schedule (bad cron -> scheduler.invalid_cron) even where none will run.
    api.tap('boot', async () => {
      for (const app of kernel.apps) {
        const lock = (app as App & { lock: LockManager }).lock;
        // `--workers N` without Redis: the cluster lock has no shared tick record, so one worker
        // (slot 1, replaced in the same slot when it dies) schedules for the cluster.
        const skip = lock.driver === 'cluster' && process.env.MEGA_WORKER_SLOT !== '1';
        const schedules = await loadSchedules(app, api.appConfig(app).schedulesDir, kernel.dir);
        if (!schedules.length || skip) continue;
        const store = storeFor(lock);
        for (const s of schedules) scheduler.add(app, s, lock, store);
        if (enabled && dedicated && lock.driver === 'memory') {
          api.log.warn(
            { app: app.name },
            `app ${app.name}: lock driver is memory: exactly one run per tick holds within this process only; with several scheduler processes set lock.service to a Redis cache alias`,
          );
        }
      }
    });
    // Late, after the servers listen: a tick never fires into a half-booted process.
    api.tap(
      'boot',
      async () => {
        if (!enabled || scheduler.size === 0) return;
        await scheduler.start();
        api.log.info({ schedules: scheduler.stats().map((s) => `${s.app}/${s.name}`) }, `scheduler: ${scheduler.size} schedule(s) armed`);
      },
      { stage: 2000 },
    );
    api.onShutdown(() => scheduler.stop());
  },
});
