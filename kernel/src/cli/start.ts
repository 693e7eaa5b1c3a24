/**
 * `mega start`: boots the project in the current directory in this process, or, with
 * `--workers N` / MEGA_CLUSTER_WORKERS, as a node:cluster primary that forks N workers.
 */
import cluster from 'node:cluster';
import { relative, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { loadProject } from '../config.js';
import type { Kernel } from '../kernel.js';
import { loadKernel, loadPlugins } from '../kernel.js';
import type { PrimaryHandler } from '../plugin.js';
import { findMegaCheckout } from './bench.js';
import { runPrimary } from './cluster.js';
import type { CliIO } from './io.js';
import { findProjectDir, formatError, noProjectMessage, settleNodeEnv } from './service.js';

export { formatError } from './service.js';

export const START_HELP = `Usage: mega start [options]

Boots the Mega project in the current directory (the nearest mega.config.ts upwards).

Options:
  --port <n>       listen port (default: PORT env, server.port, 3000)
  --workers <n>    fork n worker processes with node:cluster (or MEGA_CLUSTER_WORKERS)
  --watch          development: restart when a source file of the project changes
  --app <name>     run only this app (repeatable); inside apps/<name> that app is the default
  --env <name>     NODE_ENV to use (default: NODE_ENV, then NODE_ENV in .env, then development;
                   refused when it disagrees with the .env)
  -h, --help       show this help`;

export async function startCommand(argv: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      workers: { type: 'string' },
      app: { type: 'string', multiple: true },
      env: { type: 'string' },
      watch: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout(START_HELP);
    return 0;
  }
  const port = values.port === undefined ? undefined : parsePositiveInt(values.port, '--port', 0);
  const workersRaw = values.workers ?? process.env.MEGA_CLUSTER_WORKERS;
  const workers = workersRaw === undefined ? 0 : parsePositiveInt(workersRaw, '--workers', 1);
  if (values.watch && workers > 0) throw new CliUsageError('--watch and --workers do not go together: watch mode runs one process');
  const dir = findProjectDir(io.cwd);
  if (!dir) {
    io.stderr(noProjectMessage('start', io.cwd));
    return 1;
  }
  const settled = settleNodeEnv(dir, values.env);
  if ('conflict' in settled) {
    io.stderr(`mega start: ${settled.conflict}`);
    return 1;
  }
  if (workers > 0 && cluster.isPrimary) {
    let handlers: PrimaryHandler[];
    try {
      const project = await loadProject(dir);
      handlers = (await loadPlugins(project.config, project.dir, project.file)).flatMap((p) => (p.primary ? [p.primary()] : []));
    } catch (error) {
      io.stderr(formatError(error));
      return 1;
    }
    return runPrimary({ workers, io, handlers });
  }
  if (values.watch) {
    const { runWatch } = await import('./watch.js');
    return runWatch({ dir, args: argv.filter((a) => a !== '--watch'), io });
  }
  // Inside apps/<name>/..., run that app unless --app says otherwise.
  const inside = relative(dir, io.cwd).split(sep);
  const only = values.app ?? (inside[0] === 'apps' && inside[1] ? [inside[1]] : undefined);

  let kernel: Kernel;
  try {
    kernel = await loadKernel({ dir, ...(only ? { only } : {}), ...(port === undefined ? {} : { port }) });
    installSignalHandlers(kernel);
    await kernel.start();
  } catch (error) {
    io.stderr(formatError(error) + portHint(error, port));
    return 1;
  }
  const bootMs = Math.round(performance.now());
  printBanner(kernel, bootMs, io);
  if (cluster.isWorker) process.send?.({ type: 'mega:ready', pid: process.pid, ms: bootMs });
  return new Promise<number>(() => {}); // keeps running until a signal ends the process
}

function parsePositiveInt(raw: string, flag: string, min: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > 65535) {
    throw new CliUsageError(`${flag} must be an integer >= ${min}, got "${raw}"`);
  }
  return n;
}

export class CliUsageError extends Error {}

/** For a listen error of a port in use, how to pick another one. */
function portHint(error: unknown, port: number | undefined): string {
  for (let e = error as { code?: string; cause?: unknown; port?: number } | undefined, depth = 0; e && depth < 8; depth++) {
    if (e.code === 'EADDRINUSE') {
      const which = e.port ?? port ?? process.env.PORT ?? 'the port';
      return `\n  hint: port ${which} is already in use (another mega start?): stop that process, or choose another port with --port <n> (or PORT=<n>)`;
    }
    e = e.cause as typeof e;
  }
  return /EADDRINUSE/.test(String((error as Error)?.message))
    ? '\n  hint: the port is already in use: choose another with --port <n> (or PORT=<n>)'
    : '';
}

function installSignalHandlers(kernel: Kernel): void {
  let signalled = false;
  const graceful = (signal: NodeJS.Signals) => {
    if (signalled) {
      kernel.log.warn(`second ${signal}: forcing exit`);
      process.exit(130);
    }
    signalled = true;
    kernel.log.info(`${signal} received: shutting down`);
    kernel.stop('signal', signal).then(
      () => process.exit(0),
      (error: unknown) => {
        kernel.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => graceful('SIGTERM'));
  if (cluster.isWorker) {
    // A terminal Ctrl-C reaches the whole process group; the primary orders the drain instead.
    process.on('SIGINT', () => {});
    process.on('message', (msg: { type?: string }) => {
      if (msg?.type === 'mega:shutdown') graceful('SIGTERM');
    });
  } else {
    process.on('SIGINT', () => graceful('SIGINT'));
  }
}

function printBanner(kernel: Kernel, bootMs: number, io: CliIO): void {
  let address = `${kernel.server.host}:${kernel.server.port}`;
  if (kernel.has('http')) {
    const http = kernel.use<{ port: number }>('http');
    address = `http://${kernel.server.host === '0.0.0.0' ? 'localhost' : kernel.server.host}:${http.port}`;
  }
  const apps = kernel.apps.map((a) => (a.hosts.length ? `${a.name} (${a.hosts.join(', ')})` : `${a.name} (default host)`));
  let reason = kernel.codec.reason;
  // "npm run build:native" exists only in the Mega repository, not in a user's project.
  if (reason && !findMegaCheckout(kernel.dir)) reason = reason.replace(/\s*\((?:build it with|rebuild:) npm run build:native\)/, '');
  const codec = kernel.codec.backend + (reason ? ` (${reason})` : '');
  const title = `Mega ${kernel.version} ${cluster.isWorker ? `worker ${cluster.worker?.id} ` : ''}pid ${process.pid} (${kernel.env}) ready in ${bootMs} ms`;
  if (kernel.env === 'production') {
    // Production output is for log collectors: one JSON line through the kernel's logger, nothing else on stdout.
    kernel.log.info(
      { address, apps: kernel.apps.map((a) => a.name), plugins: kernel.plugins.map((p) => `${p.name}@${p.version}`), codec },
      title,
    );
    return;
  }
  const lines = [
    title,
    `  listening  ${address}`,
    `  apps       ${apps.join(', ')}`,
    `  plugins    ${kernel.plugins.map((p) => `${p.name}@${p.version}`).join(', ') || 'none'}`,
    `  codec      ${codec}`,
  ];
  io.stdout(lines.join('\n'));
}
