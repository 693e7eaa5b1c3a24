/**
 * `mega generate schedule` (contributed by @mega/scheduler): the real CLI writes schedules/<name>.ts
 * in a temporary project, and that project boots and runs the generated schedule on its ticks.
 */
import { bootProject, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { generateOnce, generatorProject, megaGenerate } from '../../../scripts/test/generate.js';
import { scheduleNames } from '../src/generators.js';

const PLUGINS = ['@mega/lock', '@mega/scheduler'];

describe('mega generate schedule (contributed by @mega/scheduler)', () => {
  afterEach(stopAll);

  it('derives the class and file names and refuses names that do not start with a letter', () => {
    const names = Object.fromEntries(['Cleanup', 'nightly_report', 'HTTPCheckSchedule'].map((raw) => [raw, scheduleNames(raw)]));
    expect(names).toEqual({
      Cleanup: { cls: 'Cleanup', file: 'cleanup' },
      nightly_report: { cls: 'NightlyReport', file: 'nightly-report' },
      HTTPCheckSchedule: { cls: 'HttpCheck', file: 'http-check' },
    });
    expect(() => scheduleNames('_x')).toThrow(expect.objectContaining({ code: 'generate.invalid_name' }));
  });

  it('writes schedules/cleanup.ts with the --cron given; the project boots and runs it every second', async () => {
    const dir = generatorProject(PLUGINS, { 'app.config.ts': 'export default {};\n' });
    const source = await generateOnce(dir, '@mega/scheduler', 'schedule', 'schedules/cleanup.ts', ['Cleanup', '--cron', '* * * * * *']);
    expect(source).toContain("static override cron = '* * * * * *';");

    const booted = await bootProject(dir);
    expect(booted.kernel.use('scheduler').stats()).toMatchObject([{ name: 'Cleanup', cron: '* * * * * *' }]);
    const line = await booted.waitForLog('Cleanup ran', 3000);
    expect(line).toMatchObject({ schedule: 'Cleanup' });
  });

  it('defaults to every 5 minutes, writes into apps/<app>/ with --app, and refuses a bad --cron', async () => {
    const dir = generatorProject(PLUGINS, { 'apps/ops/app.config.ts': 'export default {};\n' });
    const source = await generateOnce(dir, '@mega/scheduler', 'schedule', 'apps/ops/schedules/nightly-report.ts', [
      'nightly-report',
      '--app',
      'ops',
    ]);
    expect(source).toContain("static override cron = '*/5 * * * *';");
    const bad = await megaGenerate(dir, 'schedule', 'Other', '--cron', '61 * * * *').then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad?.code).not.toBe(0);
    expect(bad?.stderr).toMatch(/generate\.invalid_cron.*61 \* \* \* \*/);

    const booted = await bootProject(dir);
    expect(booted.kernel.use('scheduler').stats()).toMatchObject([{ app: 'ops', name: 'NightlyReport', cron: '*/5 * * * *' }]);
  });
});
