/** Job files for the tests: each job delegates to `globalThis.__jobsTest[<name>]`, set by the test. */
import { waitUntil } from '@mega/testing';
import type { JobContext } from '../src/index.js';

export type Handler = (payload: any, ctx: JobContext) => unknown;

declare global {
  var __jobsTest: Record<string, Handler>;
}

export function handlers(map: Record<string, Handler>): void {
  globalThis.__jobsTest = map;
}

const call = (name: string) => `(p, ctx) => globalThis.__jobsTest[${JSON.stringify(name)}](p, ctx)`;

/** apps/<app>/jobs/*.ts with the test jobs (class and defineJob forms). */
export function jobFiles(app: string, opts: { timeoutMs?: number; concurrency?: number } = {}): Record<string, string> {
  return {
    [`apps/${app}/jobs/work.ts`]: `import { MegaJob } from '@mega/jobs';
export class Flaky extends MegaJob {
  static retries = 3;
  static backoff = { initialMs: 5, maxMs: 20 };
  static concurrency = ${opts.concurrency ?? 4};
  run(p, ctx) { return (${call('Flaky')})(p, ctx); }
}
export class Slow extends MegaJob {
  static timeoutMs = ${opts.timeoutMs ?? 150};
  static retries = 0;
  run(p, ctx) { return (${call('Slow')})(p, ctx); }
}
export class Grouped extends MegaJob {
  static concurrency = 10;
  static groupConcurrency = 1;
  static retries = 0;
  run(p, ctx) { return (${call('Grouped')})(p, ctx); }
}
export class Capped extends MegaJob {
  static concurrency = 2;
  static groupConcurrency = 2;
  static retries = 0;
  run(p, ctx) { return (${call('Capped')})(p, ctx); }
}
`,
    [`apps/${app}/jobs/typed.ts`]: `import { defineJob } from '@mega/jobs';
export const typed = defineJob({
  name: 'Typed',
  retries: 0,
  schema: { type: 'object', required: ['to'], properties: { to: { type: 'string' } } },
  run: ${call('Typed')},
});
`,
  };
}

export const poll = <T>(fn: () => T | undefined | false, timeoutMs = 10_000, what = 'condition'): Promise<T> =>
  waitUntil(fn, { timeoutMs, what });

/** Simulated work inside a job (how long a run takes), not a wait before an assertion. */
export const work = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A run that finishes only when the test says so: `gate.release()` makes a timed-out run complete late. */
export function gate(): { wait: () => Promise<void>; release: () => void } {
  let release = () => {};
  const done = new Promise<void>((resolve) => (release = resolve));
  return { wait: () => done, release: () => release() };
}
