/**
 * Cron expressions through croner (see the README for why croner). Five fields (minute precision)
 * or six with a leading seconds field; seven (years) are refused so a pattern means the same thing
 * everywhere. Times are epoch milliseconds: a tick is identified by the instant it was due.
 */
import { Cron } from 'croner';

export interface CronSpec {
  readonly expression: string;
  readonly timezone: string | undefined;
  /** The first tick strictly after `after`, or undefined when the pattern never fires again. */
  next(after: number): number | undefined;
  /** The last tick at or before `at`, or undefined when there is none. */
  latest(at: number): number | undefined;
}

/** Parses `expression`; throws a RangeError/TypeError with croner's reason when it is invalid. */
export function parseCron(expression: string, timezone?: string): CronSpec {
  if (typeof expression !== 'string' || expression.trim() === '') throw new TypeError('the expression is empty');
  // croner accepts an unknown zone and fails later; Intl says no at once.
  if (timezone !== undefined) new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  const cron = new Cron(expression, { paused: true, mode: '5-or-6-parts', ...(timezone ? { timezone } : {}) });
  // A pattern that can never match (e.g. 30 February) parses but has no next run: refuse it here.
  if (cron.nextRun(new Date()) === null) throw new RangeError('the pattern never matches a date');
  return {
    expression,
    timezone,
    next(after) {
      return cron.nextRun(new Date(after))?.getTime();
    },
    latest(at) {
      // previousRuns excludes its reference instant: ask from 1 ms later to include `at` itself.
      return cron.previousRuns(1, new Date(at + 1))[0]?.getTime();
    },
  };
}
