/**
 * `mega scheduler [--app A] [--env E]`: boots the project with `serve: false` (servers build their
 * routes but never listen) and runs only what schedules need; SIGTERM/SIGINT stop it gracefully.
 */
import { parseArgs } from 'node:util';
import type { CliIO } from '@mega/kernel';
import { runService } from '@mega/kernel';

const DEDICATED = Symbol.for('mega.scheduler.dedicated');

export const SCHEDULER_HELP = `Usage: mega scheduler [options]

Runs the schedules (apps/<app>/schedules/*) of the project in the current directory, without
serving HTTP. Start as many as you like: with a Redis lock (lock.service) each tick runs once.

Options:
  --app <name>     run only this app's schedules (repeatable)
  --env <name>     NODE_ENV to use (default: development)
  -h, --help       show this help`;

/** True inside `mega scheduler`: the plugin runs schedules whatever `scheduler.inProcess` says. */
export function isDedicated(): boolean {
  return (globalThis as Record<symbol, unknown>)[DEDICATED] === true;
}

export async function schedulerCommand(argv: string[], io: CliIO): Promise<number> {
  let values: { app?: string[]; env?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { app: { type: 'string', multiple: true }, env: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (error) {
    io.stderr(`mega scheduler: ${(error as Error).message}\n\n${SCHEDULER_HELP}`);
    return 2;
  }
  if (values.help) {
    io.stdout(SCHEDULER_HELP);
    return 0;
  }
  if (values.env) process.env.NODE_ENV = values.env;
  (globalThis as Record<symbol, unknown>)[DEDICATED] = true;
  return runService({
    name: 'scheduler',
    io,
    apps: values.app,
    ready: (kernel) => {
      const stats = kernel.has('scheduler')
        ? kernel.use<{ stats(): Array<{ app: string; name: string; cron: string }> }>('scheduler').stats()
        : [];
      return [
        `Mega scheduler pid ${process.pid} (${kernel.env}) ready in ${Math.round(performance.now())} ms`,
        `  schedules  ${stats.map((s) => `${s.app}/${s.name} (${s.cron})`).join(', ') || 'none'}`,
      ].join('\n');
    },
  });
}
