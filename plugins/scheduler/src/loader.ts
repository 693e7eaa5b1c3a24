/**
 * Loads `apps/<app>/<schedulesDir>/*.{ts,js,mts,mjs}` (sorted) and turns every schedule they export
 * into a `LoadedSchedule`, checking each cron expression and timezone at boot: a bad one stops the
 * boot with `scheduler.invalid_cron` naming the schedule and its file, never at the first tick.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { App } from '@mega/kernel';
import { ConfigError, MegaError } from '@mega/kernel';
import { createJiti } from 'jiti';
import { parseCron } from './cron.js';
import type { LoadedSchedule, ScheduleClass, ScheduleDefinition } from './schedule.js';
import { SCHEDULE_BRAND, scheduleKind } from './schedule.js';

const FILE = /\.(ts|js|mts|mjs)$/;
// The kernel's importModule hands back only the default export; schedule files export by name.
const jiti = createJiti(import.meta.url, { interopDefault: false });

async function importAll(file: string, projectDir: string): Promise<Record<string, unknown>> {
  try {
    return ((await jiti.import(file)) ?? {}) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof MegaError) throw error;
    const message = (error as Error)?.message ?? String(error);
    const syntax = /ParseError|SyntaxError|Unexpected|Expected/.test(`${(error as Error)?.name} ${message}`);
    throw new ConfigError(
      syntax ? 'scheduler.file_syntax' : 'scheduler.file_failed',
      `${syntax ? 'syntax error' : 'failed to load'} in ${relative(projectDir, file)}: ${message.split('\n')[0]}`,
      { cause: error, details: { file } },
    );
  }
}

/** Normalises one export; undefined for exports that are not schedules (helpers, constants, the base class). */
export function toSchedule(exportName: string, value: unknown, file: string): LoadedSchedule | undefined {
  const kind = scheduleKind(value);
  if (kind === undefined) return undefined;
  if (kind === 'class') {
    const cls = value as ScheduleClass;
    // The base class itself (re-exported) carries the brand but has no branded parent.
    if (!(SCHEDULE_BRAND in Object.getPrototypeOf(cls))) return undefined;
    const instance = new (cls as unknown as new () => { run: LoadedSchedule['run'] })();
    return check({
      name: cls.scheduleName ?? cls.name ?? exportName,
      cron: cls.cron,
      timezone: cls.timezone,
      catchUp: cls.catchUp ?? 'none',
      overlap: cls.overlap ?? false,
      file,
      run: (ctx, run) => instance.run(ctx, run),
    });
  }
  const def = value as ScheduleDefinition;
  return check({
    name: def.name ?? exportName,
    cron: def.cron,
    timezone: def.timezone,
    catchUp: def.catchUp ?? 'none',
    overlap: def.overlap ?? false,
    file,
    run: (ctx, run) => def.run(ctx, run),
  });
}

function check(s: LoadedSchedule): LoadedSchedule {
  try {
    parseCron(s.cron, s.timezone);
  } catch (error) {
    const why = (error as Error).message.replace(/^CronPattern: /, '').replace(/\.$/, '');
    throw new ConfigError(
      'scheduler.invalid_cron',
      `schedule "${s.name}" (${s.file}): cron ${JSON.stringify(s.cron)}${s.timezone ? ` in ${s.timezone}` : ''} is invalid: ${why}. Use 5 fields (minute hour day month weekday) or 6 with leading seconds`,
      { cause: error, details: { schedule: s.name, file: s.file, cron: s.cron, timezone: s.timezone } },
    );
  }
  if (s.catchUp !== 'none' && s.catchUp !== 'last') {
    throw new ConfigError(
      'scheduler.invalid_schedule',
      `schedule "${s.name}" (${s.file}): catchUp must be 'none' or 'last', got ${JSON.stringify(s.catchUp)}`,
      {
        details: { schedule: s.name, file: s.file },
      },
    );
  }
  if (typeof s.run !== 'function') {
    throw new ConfigError('scheduler.invalid_schedule', `schedule "${s.name}" (${s.file}) has no run(ctx) function`, {
      details: { schedule: s.name, file: s.file },
    });
  }
  return s;
}

/** Every schedule of one app, in file then export order; duplicate names fail boot. */
export async function loadSchedules(app: App, dirName: string, projectDir: string): Promise<LoadedSchedule[]> {
  const dir = join(app.dir, dirName);
  if (!existsSync(dir)) return [];
  const files = readdirSync(dir)
    .filter((f) => FILE.test(f) && !f.endsWith('.d.ts') && !/\.test\./.test(f))
    .sort();
  const out: LoadedSchedule[] = [];
  const seen = new Map<string, string>();
  const values = new Set<unknown>();
  for (const f of files) {
    const path = join(dir, f);
    const rel = relative(projectDir, path);
    const mod = await importAll(path, projectDir);
    for (const [exportName, value] of Object.entries(mod)) {
      // `export default X` beside `export { X }`: one schedule.
      if (values.has(value)) continue;
      const s = toSchedule(exportName, value, rel);
      if (!s) continue;
      values.add(value);
      const other = seen.get(s.name);
      if (other !== undefined) {
        throw new ConfigError(
          'scheduler.duplicate',
          `app ${app.name}: two schedules are named "${s.name}" (${other} and ${rel}); set static scheduleName or name`,
          {
            details: { app: app.name, schedule: s.name, files: [other, rel] },
          },
        );
      }
      seen.set(s.name, rel);
      out.push(s);
    }
  }
  return out;
}
