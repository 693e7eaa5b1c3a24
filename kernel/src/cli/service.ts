/**
 * What the CLI and plugins' commands share: finding the project, one readable error block, and
 * running the project as a long-lived process that serves no traffic (`mega worker`, `mega
 * scheduler`): boot with `serve: false`, stop cleanly on SIGTERM/SIGINT, force on a second signal.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CONFIG_NAMES } from '../config.js';
import { isMegaError } from '../errors.js';
import { type Kernel, loadKernel } from '../kernel.js';
import type { CliIO } from '../plugin.js';

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
    io.stderr(`mega ${name}: no mega.config.ts in ${io.cwd} or above (create a project with: mega new <dir>)`);
    return 1;
  }
  process.env.NODE_ENV ??= 'development';
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
