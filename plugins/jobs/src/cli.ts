/**
 * `mega worker` (consumers without HTTP: the kernel boots with `serve: false`, so @mega/http builds
 * routes but never listens) and `mega jobs stats | dlq list | dlq replay <seq>|--all | dlq purge`.
 * The command runs in the process that then loads this same module for the project's plugin list,
 * so the run mode is handed over through module state.
 */
import { parseArgs } from 'node:util';
import type { CliCommand, CliIO, Kernel } from '@mega/kernel';
import { createLogger, findProjectDir, isMegaError, loadKernel, runService } from '@mega/kernel';
import type { Jobs } from './jobs.js';

export type RunMode = { kind: 'start' } | { kind: 'worker'; jobs: string[] | undefined } | { kind: 'admin' };

let mode: RunMode = { kind: 'start' };

export function runMode(): RunMode {
  return mode;
}

function fail(io: CliIO, error: unknown): number {
  io.stderr(isMegaError(error) ? `mega: [${error.code}] ${error.message}` : `mega: ${(error as Error)?.stack ?? String(error)}`);
  return 1;
}

export const workerCommand: CliCommand = {
  summary: 'run job consumers without HTTP (--app A, --jobs a,b)',
  async run(argv, io) {
    const { values } = parseArgs({
      args: argv,
      options: { app: { type: 'string', multiple: true }, jobs: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    });
    if (values.help) {
      io.stdout(
        'Usage: mega worker [--app <name>]... [--jobs a,b]\n\nRuns the job consumers of the project (all apps, all jobs by default) without listening for HTTP.',
      );
      return 0;
    }
    mode = {
      kind: 'worker',
      jobs: values.jobs
        ? values.jobs
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : undefined,
    };
    return runService({
      name: 'worker',
      io,
      apps: values.app,
      ready: (kernel) => `mega worker pid ${process.pid} ready: apps ${kernel.apps.map((a) => a.name).join(', ')}`,
    });
  },
};

const JOBS_HELP = `Usage: mega jobs <command> [--app <name>]

  stats                 pending, running, redelivered per job; delayed and dead-lettered counts
  dlq list [--limit n]  dead letters (seq, job, id, failedAt, phase, error)
  dlq replay <seq>      re-enqueue one dead letter and remove it from the DLQ
  dlq replay --all      re-enqueue every dead letter
  dlq purge             delete every dead letter of the app
  --json                machine-readable output`;

export const jobsCommand: CliCommand = {
  summary: 'jobs stats, dlq list | replay <seq>|--all | purge',
  async run(argv, io) {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        app: { type: 'string' },
        all: { type: 'boolean' },
        limit: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    const [cmd, sub, arg] = positionals;
    const valid = cmd === 'stats' || (cmd === 'dlq' && (sub === 'list' || sub === 'purge' || (sub === 'replay' && (values.all || arg))));
    if (values.help || !valid) {
      io.stdout(JOBS_HELP);
      return values.help ? 0 : 2;
    }
    const dir = findProjectDir(io.cwd);
    if (!dir) {
      io.stderr(`mega jobs: no mega.config.ts in ${io.cwd} or above`);
      return 1;
    }
    process.env.NODE_ENV ??= 'development';
    mode = { kind: 'admin' };
    let kernel: Kernel | undefined;
    try {
      kernel = await loadKernel({ dir, serve: false, logger: createLogger({ level: 'error' }) });
      await kernel.start();
      const service = kernel.use('jobs');
      const jobs: Jobs = service.app(values.app);
      if (service.driver === 'memory')
        io.stderr('mega jobs: the memory driver keeps jobs inside each process; this shows only this (empty) process');
      const print = (value: unknown, text: string) => io.stdout(values.json ? JSON.stringify(value, null, 2) : text);
      if (cmd === 'stats') {
        const s = await jobs.stats();
        const rows = Object.entries(s.jobs).map(
          ([n, r]) => `  ${n.padEnd(24)} pending ${r.pending}  running ${r.running}  redelivered ${r.redelivered ?? 0}`,
        );
        print(s, `app ${jobs.app.name} (${s.driver})\n${rows.join('\n') || '  no jobs'}\n  delayed ${s.delayed}  dlq ${s.dlq}`);
      } else if (sub === 'list') {
        const rows = await jobs.dlq.list(values.limit ? Number(values.limit) : 100);
        print(
          rows,
          rows
            .map(
              (r) =>
                `${String(r.seq).padEnd(6)} ${r.letter.job} ${r.letter.id} ${r.letter.failedAt} ${r.letter.phase} x${r.letter.deliveryCount}: ${r.letter.error.message}`,
            )
            .join('\n') || 'the DLQ is empty',
        );
      } else if (sub === 'replay') {
        const n = await jobs.dlq.replay(values.all ? 'all' : Number(arg));
        print({ replayed: n }, `replayed ${n} dead letter(s)`);
      } else {
        const n = await jobs.dlq.purge();
        print({ purged: n }, `purged ${n} dead letter(s)`);
      }
      return 0;
    } catch (error) {
      return fail(io, error);
    } finally {
      await kernel?.stop('mega jobs done').catch(() => undefined);
    }
  },
};
