/**
 * `mega generate schedule <Name> [--cron '<expr>'] [--app <app>]`: a `MegaSchedule` class in the
 * app's `schedules/` folder (the project root of a single-app project, apps/<app>/ otherwise).
 */
import type { Generator } from '@mega/kernel';
import { ValidationError } from '@mega/kernel';
import { parseCron } from './cron.js';

/** `nightly_cleanup`, `NightlyCleanup` -> 'NightlyCleanup' (the class) and 'nightly-cleanup' (the file). */
export function scheduleNames(raw: string): { cls: string; file: string } {
  const parts = raw.replace(/Schedule$/, '').match(/[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])/g) ?? [];
  if (!/^[A-Za-z]/.test(raw) || parts.length === 0) {
    throw new ValidationError('generate.invalid_name', `"${raw}" is not a usable schedule name: start with a letter (e.g. Cleanup)`);
  }
  return { cls: parts.map((p) => p[0]?.toUpperCase() + p.slice(1).toLowerCase()).join(''), file: parts.join('-').toLowerCase() };
}

const scheduleSource = (cls: string, cron: string) => `import type { MegaContext } from '@mega/kernel';
import { MegaSchedule, type ScheduleRun } from '@mega/scheduler';

// Runs once per tick across every process that schedules (see @mega/scheduler's README).
export class ${cls} extends MegaSchedule {
  static override cron = '${cron.replace(/['\\]/g, '\\$&')}'; // 5 fields, or 6 with a leading seconds field
  // static timezone = 'Europe/Paris'; static catchUp = 'last' as const; static overlap = true;

  async run(ctx: MegaContext, run: ScheduleRun) {
    ctx.log.info({ schedule: run.name, tick: run.tick.toISOString() }, '${cls} ran');
    // A run is not retried: for work that needs retries, enqueue a job (with @mega/jobs):
    //   await ctx.jobs.enqueue('${cls}', {}, { id: \`${cls}:\${run.tick.toISOString()}\` });
  }
}
`;

export const scheduleGenerator: Generator = {
  summary: "a schedule class (schedules/<name>.ts); --cron '<expr>' sets its cron (default every 5 minutes)",
  async run(name, project, options) {
    const { cls, file } = scheduleNames(name);
    const cron = typeof options.cron === 'string' ? options.cron : '*/5 * * * *';
    try {
      parseCron(cron);
    } catch (e) {
      throw new ValidationError('generate.invalid_cron', `--cron "${cron}" is invalid: ${(e as Error).message}`);
    }
    const path = `${typeof options.app === 'string' ? `apps/${options.app}/` : ''}schedules/${file}.ts`;
    if (!(await project.writeFileIfMissing(path, scheduleSource(cls, cron)))) project.log(`${path} exists; left as it is`);
  },
};
