/**
 * What the CLI and plugins' commands share: finding the project, one readable error block, and
 * running the project as a long-lived process that serves no traffic (`mega worker`, `mega
 * scheduler`): boot with `serve: false`, stop cleanly on SIGTERM/SIGINT, force on a second signal.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { CONFIG_NAMES } from '../config.js';
import { isMegaError } from '../errors.js';
import { type Kernel, loadKernel } from '../kernel.js';
import type { CliIO } from '../plugin.js';

export type { Progress, ProgressOptions } from './progress.js';
/** A progress line for long work in plugins' commands (builds, downloads): announced, ticking, timed. */
export { startProgress } from './progress.js';

/** Walks up from `from` to the nearest directory holding a mega.config file. */
export function findProjectDir(from: string): string | undefined {
  let dir = resolve(from);
  for (;;) {
    if (CONFIG_NAMES.some((n) => existsSync(join(dir, n)))) return dir;
    const parent = resolve(dir, '..');
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The "no project here" message every command prints, with the way to make one. */
export function noProjectMessage(command: string, cwd: string): string {
  return `mega ${command}: no mega.config.ts in ${cwd} or above: create a project with "mega new <dir>", or cd into one`;
}

/**
 * Settles NODE_ENV for a command before the project's `.env` is loaded: `--env`, else the real
 * environment, else NODE_ENV from `.env`, else development. An `--env` that disagrees with the
 * `.env` is refused (a production `.env` silently run as development serves stack traces).
 */
export function settleNodeEnv(dir: string, flag: string | undefined): { env: string } | { conflict: string } {
  if (process.env.NODE_ENV === '') delete process.env.NODE_ENV;
  const file = join(dir, '.env');
  let fromFile: string | undefined;
  if (existsSync(file)) {
    try {
      fromFile = parseEnv(readFileSync(file, 'utf8')).NODE_ENV || undefined;
    } catch {
      // loadDotEnv reports an unreadable .env with its own error at load time
    }
  }
  if (flag && fromFile && flag !== fromFile) {
    return {
      conflict: `--env ${flag} disagrees with NODE_ENV=${fromFile} in ${file}: change or remove one of them (without --env, the .env value is used)`,
    };
  }
  const env = flag ?? process.env.NODE_ENV ?? fromFile ?? 'development';
  process.env.NODE_ENV = env;
  return { env };
}

/** One readable block: code, message, and the details a user needs to fix it. */
export function formatError(error: unknown): string {
  if (isMegaError(error)) {
    const details = error.details === undefined ? '' : `\n  details: ${JSON.stringify(error.details)}`;
    return `mega: [${error.code}] ${error.message}${details}`;
  }
  return `mega: ${(error as Error)?.stack ?? String(error)}`;
}

export interface ServiceOptions {
  /** The command's name, for messages: `worker`. */
  name: string;
  io: CliIO;
  /** Only these apps (default: all). */
  apps?: string[] | undefined;
  /** The line printed once the kernel runs (default: `mega <name> pid <pid> ready`). */
  ready?: (kernel: Kernel) => string;
}

/** Boots the project in `io.cwd` without serving traffic and runs until a signal; resolves only on failure (1). */
export async function runService(options: ServiceOptions): Promise<number> {
  const { io, name } = options;
  const dir = findProjectDir(io.cwd);
  if (!dir) {
    io.stderr(noProjectMessage(name, io.cwd));
    return 1;
  }
  const settled = settleNodeEnv(dir, undefined);
  if ('conflict' in settled) {
    io.stderr(`mega ${name}: ${settled.conflict}`);
    return 1;
  }
  let kernel: Kernel;
  try {
    kernel = await loadKernel({ dir, serve: false, ...(options.apps?.length ? { only: options.apps } : {}) });
    let signalled = false;
    const stop = (signal: NodeJS.Signals) => {
      if (signalled) process.exit(130);
      signalled = true;
      kernel.log.info(`${signal} received: stopping mega ${name}`);
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
    await kernel.start();
  } catch (error) {
    io.stderr(formatError(error));
    return 1;
  }
  io.stdout(options.ready?.(kernel) ?? `mega ${name} pid ${process.pid} (${kernel.env}) ready`);
  return new Promise<number>(() => {}); // runs until a signal stops the kernel
}
