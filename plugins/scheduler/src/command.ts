/**
 * `mega scheduler [--app A] [--env E]`: boots the project with `serve: false` (servers build their
 * routes but never listen) and runs only what schedules need; SIGTERM/SIGINT stop it gracefully.
 */
import { parseArgs } from 'node:util';
import type { CliIO, Kernel } from '@mega/kernel';
import { findProjectDir, isMegaError, loadKernel } from '@mega/kernel';

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
  process.env.NODE_ENV ??= 'development';
  const dir = findProjectDir(io.cwd);
  if (!dir) {
    io.stderr(`mega scheduler: no mega.config.ts in ${io.cwd} or above; cd into a Mega project`);
    return 1;
  }
  (globalThis as Record<symbol, unknown>)[DEDICATED] = true;
  let kernel: Kernel;
  try {
    kernel = await loadKernel({ dir, serve: false, ...(values.app ? { only: values.app } : {}) });
    installSignals(kernel);
    await kernel.start();
  } catch (error) {
    io.stderr(describe(error));
    return 1;
  }
  const stats = kernel.has('scheduler')
    ? kernel.use<{ stats(): Array<{ app: string; name: string; cron: string }> }>('scheduler').stats()
    : [];
  io.stdout(
    [
      `Mega scheduler pid ${process.pid} (${kernel.env}) ready in ${Math.round(performance.now())} ms`,
      `  schedules  ${stats.map((s) => `${s.app}/${s.name} (${s.cron})`).join(', ') || 'none'}`,
    ].join('\n'),
  );
  return new Promise<number>(() => {}); // runs until a signal stops the kernel
}

function installSignals(kernel: Kernel): void {
  let signalled = false;
  const stop = (signal: NodeJS.Signals) => {
    if (signalled) process.exit(130);
    signalled = true;
    kernel.log.info(`${signal} received: stopping the scheduler`);
    kernel.stop('signal', signal).then(
      () => process.exit(0),
      (error: unknown) => {
        kernel.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function describe(error: unknown): string {
  if (!isMegaError(error)) return `mega scheduler: ${(error as Error)?.stack ?? String(error)}`;
  const details = error.details === undefined ? '' : `\n  details: ${JSON.stringify(error.details)}`;
  return `mega scheduler: ${error.code}: ${error.message}${details}`;
}
