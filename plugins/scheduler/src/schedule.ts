/**
 * What a file in `schedules/` exports: a class extending `MegaSchedule` or a `defineSchedule({...})`
 * object. Both are recognised by a brand on a global symbol, so a schedule file that reached its own
 * copy of this module (jiti, a bundler) is still found.
 */
import type { MegaContext } from '@mega/kernel';

export type CatchUp = 'none' | 'last';

/** What a run is told about itself; also `ctx.source` of the run's ctx. */
export interface ScheduleRun {
  /** The schedule's name (`app/name` in logs). */
  readonly name: string;
  readonly app: string;
  /** The instant this tick was due (not when it started). */
  readonly tick: Date;
  /** Fencing token of the lock taken for this tick: hand it to resources that refuse stale writers. */
  readonly token: number;
  /** Aborts when the lock was lost (`lock.lost`) or the process shuts down (`scheduler.shutdown`). */
  readonly signal: AbortSignal;
  /** True for a tick run late by `catchUp: 'last'` after downtime. */
  readonly catchUp: boolean;
}

export interface ScheduleOptions {
  /** Cron expression: 5 fields, or 6 with a leading seconds field. */
  cron: string;
  /** IANA zone the expression is read in (default: the process's zone). */
  timezone?: string;
  /** Ticks missed while no scheduler ran: `none` (default) skips them, `last` runs the latest one once. */
  catchUp?: CatchUp;
  /** Allow a run to start while the previous run of this schedule is still going (default false: the tick is skipped). */
  overlap?: boolean;
}

export interface ScheduleDefinition extends ScheduleOptions {
  /** Default: the export's name. */
  name?: string;
  run(ctx: MegaContext, run: ScheduleRun): Promise<unknown> | unknown;
}

/** Brand read by the loader (a global symbol, shared by every copy of this module). */
export const SCHEDULE_BRAND: unique symbol = Symbol.for('mega.scheduler.schedule') as never;

/**
 * Base class of a schedule: `export class Cleanup extends MegaSchedule { static cron = '*\/5 * * * *'; async run(ctx) {} }`.
 * One instance per schedule is made at boot; `run` is called once per tick that this process wins.
 */
export abstract class MegaSchedule {
  static readonly [SCHEDULE_BRAND] = 'class';
  /** Cron expression: 5 fields, or 6 with a leading seconds field. Required. */
  static cron: string;
  static timezone?: string;
  static catchUp?: CatchUp;
  static overlap?: boolean;
  /** Default: the class name. */
  static scheduleName?: string;

  abstract run(ctx: MegaContext, run: ScheduleRun): Promise<unknown> | unknown;
}

export type ScheduleClass = (abstract new () => MegaSchedule) & Omit<typeof MegaSchedule, 'prototype'>;

/** The object form: `export const cleanup = defineSchedule({ cron: '0 3 * * *', run: async (ctx) => {} })`. */
export function defineSchedule(definition: ScheduleDefinition): Readonly<ScheduleDefinition> {
  return Object.freeze({ ...definition, [SCHEDULE_BRAND]: 'object' });
}

/** A schedule as the scheduler keeps it, whatever form it was written in. */
export interface LoadedSchedule extends Required<Omit<ScheduleOptions, 'timezone'>> {
  name: string;
  timezone: string | undefined;
  /** `apps/<app>/schedules/<file>`, for messages. */
  file: string;
  run(ctx: MegaContext, run: ScheduleRun): Promise<unknown> | unknown;
}

export function scheduleKind(value: unknown): 'class' | 'object' | undefined {
  if ((typeof value !== 'function' && typeof value !== 'object') || value === null) return undefined;
  const brand = (value as { [SCHEDULE_BRAND]?: unknown })[SCHEDULE_BRAND];
  return brand === 'class' || brand === 'object' ? brand : undefined;
}
