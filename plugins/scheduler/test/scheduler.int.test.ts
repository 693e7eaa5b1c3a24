/**
 * Real `mega scheduler` processes on the real Redis from scripts/services.sh (lock driver redis):
 * two processes, a 1-second cron, 10 ticks -> exactly 10 runs; catch-up after both were down; a bad
 * cron stops the boot. Runs are appended to a file by the schedules themselves; everything polls.
 */
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { waitUntil, writeProject } from '@mega/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, killAll, runMega, type Watched } from '../../../scripts/test/procs.js';
import { serviceEnv } from '../../../scripts/test/service-env.js';

const env = serviceEnv();
const run = `${process.pid}${Date.now().toString(36)}`;
afterAll(killAll);

interface Line {
  name: string;
  tick: number;
  pid: number;
  catchUp: boolean;
}

const SCHEDULES = `import { appendFileSync } from 'node:fs';
import { MegaSchedule, defineSchedule } from '@mega/scheduler';

const write = (run) => appendFileSync(process.env.RUNS_FILE, JSON.stringify({ name: run.name, tick: run.tick.getTime(), pid: process.pid, catchUp: run.catchUp }) + '\\n');

/** catchUp defaults to 'none'. */
export class Counter extends MegaSchedule {
  static cron = '* * * * * *';
  async run(ctx, run) {
    write(run);
  }
}

export const catcher = defineSchedule({ cron: '* * * * * *', catchUp: 'last', run: (ctx, run) => write(run) });
`;

function project(files: Record<string, string> = {}): string {
  return writeProject({
    'mega.config.ts': `export default {
  plugins: ['@mega/http', '@mega/cache-redis', '@mega/lock', '@mega/scheduler'],
  services: { caches: { default: { driver: 'redis', url: ${JSON.stringify(env.REDIS_URL)} } } },
};\n`,
    'app.config.ts': `export default { lock: { service: 'default', prefix: 'sched${run}:' } };\n`,
    'schedules/ticks.ts': SCHEDULES,
    ...files,
  });
}

function lines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
}

const until = <T>(what: string, fn: () => T | undefined | false, timeoutMs = 30_000): Promise<T> =>
  waitUntil(fn, { timeoutMs, what, intervalMs: 25 });

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

describe('mega scheduler (two processes, Redis lock)', () => {
  const dir = project();
  const file = join(dir, 'runs.jsonl');
  let port = 0;
  const start = (): Promise<Watched> => {
    const w = runMega(['scheduler'], dir, { RUNS_FILE: file, PORT: String(port) });
    return w.waitFor(/Mega scheduler pid \d+ .*ready/, 30_000).then(() => w);
  };

  it('a 1-second cron over 10 ticks runs exactly 10 times, and no process serves HTTP', async () => {
    port = await freePort();
    const [a, b] = await Promise.all([start(), start()]);
    expect(a.out()).toMatch(/schedules {2}[\w-]+\/Counter \(\* \* \* \* \* \*\), [\w-]+\/catcher \(\* \* \* \* \* \*\)/);
    expect(await listening(port)).toBe(false);
    // From the first tick that is due after both are up, ten consecutive ticks.
    const first = Math.ceil((Date.now() + 1) / 1000) * 1000;
    const last = first + 9000;
    // Wait until a tick after the window ran (so every tick of the window had its chance in both).
    await until('a tick after the window', () => lines(file).some((l) => l.name === 'Counter' && l.tick > last + 1000));
    const window = lines(file).filter((l) => l.name === 'Counter' && l.tick >= first && l.tick <= last);
    expect(window.map((l) => l.tick).sort()).toEqual(Array.from({ length: 10 }, (_, i) => first + i * 1000));
    // And across the whole run, no tick of either schedule ran twice.
    for (const name of ['Counter', 'catcher']) {
      const ticks = lines(file)
        .filter((l) => l.name === name)
        .map((l) => l.tick);
      expect(new Set(ticks).size).toBe(ticks.length);
    }
    const pids = new Set(lines(file).map((l) => l.pid));
    expect([...pids].every((p) => p === a.child.pid || p === b.child.pid)).toBe(true);
    expect(a.out() + b.out()).not.toMatch(/"level":50/);

    // Both stop (SIGTERM: graceful, exit 0); downtime of at least 2 ticks.
    await Promise.all([a.kill('SIGTERM'), b.kill('SIGTERM')]);
    expect([(await a.exited).code, (await b.exited).code]).toEqual([0, 0]);
    const before = lines(file);
    const lastCatcher = Math.max(...before.filter((l) => l.name === 'catcher').map((l) => l.tick));
    const lastCounter = Math.max(...before.filter((l) => l.name === 'Counter').map((l) => l.tick));
    await until('two ticks of downtime', () => Date.now() > Math.max(lastCatcher, lastCounter) + 2500);

    // catchUp: 'last' runs the latest missed tick once (flagged), catchUp: 'none' skips the gap.
    const c = await start();
    const booted = Date.now();
    await until('a catch-up run', () => lines(file).find((l) => l.catchUp));
    await until('regular runs after the restart', () => lines(file).some((l) => l.name === 'Counter' && l.tick > booted + 1000));
    const after = lines(file).slice(before.length);
    const caught = after.filter((l) => l.catchUp);
    expect(caught).toHaveLength(1);
    expect(caught[0]).toMatchObject({ name: 'catcher', pid: c.child.pid });
    expect(caught[0]?.tick).toBeGreaterThan(lastCatcher + 1000); // a tick of the gap, not the last one run
    expect(caught[0]?.tick).toBeLessThanOrEqual(booted);
    // Counter (none): its first run after the restart is a tick after the process was up.
    const firstCounter = Math.min(...after.filter((l) => l.name === 'Counter').map((l) => l.tick));
    expect(firstCounter).toBeGreaterThan(lastCounter + 2000);
    expect(c.out()).toMatch(/\/Counter: ticks missed since .* are skipped \(catchUp: none\)/);
    await c.kill('SIGTERM');
  });

  it('a bad cron stops `mega scheduler` with scheduler.invalid_cron naming the schedule', async () => {
    const bad = project({
      'schedules/bad.ts': `import { defineSchedule } from '@mega/scheduler';\nexport const reports = defineSchedule({ cron: '*/5 * * *', run() {} });\n`,
    });
    const w = runMega(['scheduler'], bad, { RUNS_FILE: join(bad, 'runs.jsonl') });
    const { code } = await w.exited;
    expect(code).toBe(1);
    expect(w.out()).toMatch(/\[scheduler\.invalid_cron\] .*schedule "reports" \(schedules\/bad\.ts\): cron "\*\/5 \* \* \*" is invalid/);
  });
});
