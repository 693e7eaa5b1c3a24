/**
 * The plugin booted with @mega/lock: schedule files loaded from `schedules/`, runs with the app's
 * ctx, boot errors for bad schedules, and `scheduler.inProcess: false`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernel } from '@mega/kernel';
import { buildPlugins, stopAll } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import lock from '../../lock/src/index.js';
import scheduler from '../src/index.js';

afterEach(stopAll);
const SRC = join(import.meta.dirname, '../src/index.ts');

function withSchedules(files: Record<string, string>, config: Record<string, unknown> = {}) {
  const booted = buildPlugins({ plugins: [lock, scheduler], config, apps: { shop: {} } });
  const dir = join((booted.kernel as Kernel).apps[0]?.dir as string, 'schedules');
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return booted;
}

describe('@mega/scheduler plugin', () => {
  it('loads class and defineSchedule exports from schedules/ and runs them with the app ctx', async () => {
    const booted = withSchedules({
      'every-second.ts': `import { MegaSchedule, defineSchedule } from ${JSON.stringify(SRC)};
export class EverySecond extends MegaSchedule {
  static cron = '* * * * * *';
  async run(ctx, run) {
    if (typeof ctx.lock.with !== 'function' || ctx.source !== run || !ctx.id.startsWith('EverySecond@') || run.token < 1) throw new Error('bad ctx');
  }
}
export const nightly = defineSchedule({ cron: '0 3 * * *', timezone: 'Europe/Paris', catchUp: 'last', run() {} });
export const notASchedule = 42;
`,
    });
    await booted.kernel.start();
    const service = booted.kernel.use('scheduler');
    expect(service.stats().map((s) => [s.app, s.name, s.cron])).toEqual([
      ['shop', 'EverySecond', '* * * * * *'],
      ['shop', 'nightly', '0 3 * * *'],
    ]);
    const line = await booted.waitForLog((l) => l.msg === 'scheduler: 2 schedule(s) armed', 1000);
    expect(line.plugin).toBe('@mega/scheduler');
    // Real time: wait for the first tick (at most ~1 s away).
    const deadline = Date.now() + 3000;
    while (service.stats()[0]?.ran === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(service.stats()[0]?.ran).toBeGreaterThanOrEqual(1);
    expect(booted.findLogs((l) => l.level >= 50)).toEqual([]);
  });

  it('a bad cron fails boot with scheduler.invalid_cron naming the schedule and file', async () => {
    const booted = withSchedules({
      'bad.ts': `import { defineSchedule } from ${JSON.stringify(SRC)};\nexport const cleanup = defineSchedule({ cron: '61 * * * *', run() {} });\n`,
    });
    const error = await booted.kernel.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'scheduler.invalid_cron', plugin: '@mega/scheduler' });
    expect(String((error as Error).message)).toMatch(
      /schedule "cleanup" \(apps\/shop\/schedules\/bad\.ts\): cron "61 \* \* \* \*" is invalid/,
    );
  });

  it('an unknown time zone and duplicate names fail boot too', async () => {
    const tz = withSchedules({
      'tz.ts': `import { defineSchedule } from ${JSON.stringify(SRC)};\nexport const x = defineSchedule({ cron: '* * * * *', timezone: 'Mars/Olympus', run() {} });\n`,
    });
    await expect(tz.kernel.start()).rejects.toMatchObject({ code: 'scheduler.invalid_cron' });
    const dup = withSchedules({
      'a.ts': `import { defineSchedule } from ${JSON.stringify(SRC)};\nexport const x = defineSchedule({ cron: '* * * * *', run() {} });\n`,
      'b.ts': `import { defineSchedule } from ${JSON.stringify(SRC)};\nexport const x = defineSchedule({ cron: '* * * * *', run() {} });\n`,
    });
    await expect(dup.kernel.start()).rejects.toMatchObject({ code: 'scheduler.duplicate' });
  });

  it('scheduler.inProcess: false loads and checks schedules but arms nothing', async () => {
    const booted = withSchedules(
      {
        's.ts': `import { defineSchedule } from ${JSON.stringify(SRC)};\nexport const x = defineSchedule({ cron: '* * * * * *', run() {} });\n`,
      },
      { scheduler: { inProcess: false } },
    );
    await booted.kernel.start();
    const service = booted.kernel.use('scheduler');
    expect(service.started).toBe(false);
    expect(service.stats()).toMatchObject([{ name: 'x', next: undefined }]);
  });

  it('unknown scheduler keys fail validation', async () => {
    const booted = buildPlugins({ plugins: [lock, scheduler], config: { scheduler: { inprocess: false } as never } });
    await expect(booted.kernel.start()).rejects.toMatchObject({ code: 'config.invalid' });
  });
});
