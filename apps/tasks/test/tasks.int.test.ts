/**
 * apps/tasks end to end on embedded defaults (memory jobs driver, memory lock, worker threads): a
 * route enqueues BuildReport, the job counts primes on a worker thread, GET shows the result; the
 * Housekeeping schedule (every second here) enqueues Cleanup, which runs. Polls, no fixed sleeps.
 */
import { join } from 'node:path';
import type { JobEventData } from '@mega/jobs';
import type {} from '@mega/scheduler';
import { type Booted, bootProject, stopAll, waitUntil } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const APP = join(import.meta.dirname, '..');
const ENV = { TASKS_CLEANUP_CRON: '* * * * * *', TASKS_REPORT_MAX_AGE_MS: '600000' };
let app: Booted;
const done: JobEventData[] = [];

const until = <T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> =>
  waitUntil(fn, { timeoutMs, what, intervalMs: 25 });

beforeAll(async () => {
  Object.assign(process.env, ENV);
  app = await bootProject(APP);
  app.kernel.apps[0]?.jobs.on('done', (e) => void done.push(e));
});

afterAll(async () => {
  await stopAll();
  for (const key of Object.keys(ENV)) delete process.env[key];
});

describe('apps/tasks', () => {
  it('POST /reports enqueues BuildReport (202 + job id); the job counts primes on a worker thread; GET shows the result', async () => {
    const created = await app.inject('/reports', { method: 'POST', json: { limit: 1_000_000 } });
    expect(created.status).toBe(202);
    const { id } = created.data as { id: string };
    expect(created.headers.location).toBe(`/reports/${id}`);

    const report = await until('the report to be done', async () => {
      const res = await app.inject(`/reports/${id}`);
      expect(res.status).toBe(200);
      const data = res.data as { status: string };
      expect(['queued', 'running', 'done']).toContain(data.status);
      return data.status === 'done' ? data : undefined;
    });
    expect(report).toMatchObject({ id, status: 'done', limit: 1_000_000, attempts: 1, result: { primes: 78_498 } });
    expect(done.find((e) => e.job === 'BuildReport')).toMatchObject({ id, attempt: 1 });
    // The sieve ran off the main thread, through the app's pool.
    expect(
      app.kernel
        .use('workers')
        .of(app.kernel.apps[0]?.name as string)
        .primes?.stats(),
    ).toMatchObject({ completed: 1, failed: 0 });
  });

  it('a payload the job schema refuses is a 400 in the envelope with the job code, and nothing is kept', async () => {
    for (const json of [{ limit: 1 }, { limit: 'many' }, {}, { limit: 10, extra: true }]) {
      const res = await app.inject('/reports', { method: 'POST', json });
      expect([res.status, res.code]).toEqual([400, 'jobs.invalid_payload']);
      expect((res.json as { error: { details: { job: string } } }).error.details.job).toBe('BuildReport');
    }
    const res = await app.inject('/reports/nope');
    expect([res.status, res.code]).toEqual([404, 'reports.not_found']);
    const list = await app.inject('/reports');
    expect((list.data as { reports: unknown[] }).reports).toHaveLength(1);
  });

  it('the Housekeeping schedule runs and enqueues a Cleanup job, which runs and forgets old reports', async () => {
    const scheduler = app.kernel.use('scheduler');
    await until('a Housekeeping tick', () => scheduler.stats().find((s) => s.name === 'Housekeeping' && s.ran >= 1));
    const cleanup = await until('a Cleanup job done', () => done.find((e) => e.job === 'Cleanup'));
    expect(cleanup.id).toMatch(/^cleanup:\d{4}-\d\d-\d\dT/);
    const list = await app.inject('/reports');
    expect((list.data as { cleanups: { runs: number } }).cleanups.runs).toBeGreaterThanOrEqual(1);
    expect((list.data as { reports: unknown[] }).reports).toHaveLength(1); // younger than 10 minutes: kept

    // The schedule reads the age on each tick: with 0 the next Cleanup forgets the done report.
    process.env.TASKS_REPORT_MAX_AGE_MS = '0';
    await until('the done report to be cleaned up', async () => {
      const res = await app.inject('/reports');
      const data = res.data as { reports: unknown[]; cleanups: { removed: number } };
      return data.reports.length === 0 ? data : undefined;
    });
    expect(app.findLogs((l) => l.level >= 50)).toEqual([]);
  });
});
