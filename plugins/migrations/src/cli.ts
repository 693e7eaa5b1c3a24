/**
 * `mega migrate generate | up | down | redo | status | resolve` and the `migration` kind of
 * `mega generate`. `generate` reads the project and its models without booting; the others boot
 * the project with `serve: false` (nothing listens, the boot check of this plugin stands aside).
 */
import { createInterface, type Interface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { CliCommand, CliIO, Generator, Kernel } from '@mega/kernel';
import { createLogger, findProjectDir, formatError, loadKernel, MegaError } from '@mega/kernel';
import { generate } from './generate.js';
import type { StatusEntry } from './runner.js';
import type { MigrationsService, Reporter } from './service.js';

let cliMode = false;

/** True inside `mega migrate`: the plugin's boot check (auto / requireApplied) stands aside. */
export function isMigrateCommand(): boolean {
  return cliMode;
}

export const MIGRATE_HELP = `Usage: mega migrate <command> [options]

Commands:
  generate <name>          write migrations/<ts>-<name>.ts from the diff of the models and the journal
    --rename a:b           a rename: table.old:new (column) or old:new (table); repeatable
    --allow-destructive    no likely renames asked: drop and re-create them
    --empty                an empty migration (data changes, hand-written DDL)
    --baseline             record the models as the schema after the newest migration (no file)
    --dry-run              print what would change, write nothing
  up [--to <id>]           apply pending migrations (one line each, with its duration)
  down [--steps N | --to <id>]  revert the newest applied migration(s) (default 1)
  redo                     down 1, then up 1
  status [--verify] [--json]    applied / pending / drift per migration; --verify also compares
                           the database with the models (exit 1 on drift or differences)
  resolve <id> --applied | --rolled-back   fix the record after a partial run, or accept an edited file

Options:
  --app <name>             one app (default: every app)
  --db <alias>             one services.dbs alias (default: every alias with migrations)
  --env <name>             NODE_ENV (default: the environment's, else the .env's, else development;
                           refused when it disagrees with the .env)
  --allow-destructive      up/down/redo in production: allow migrations that lose data`;

interface Terminal {
  ask(question: string): Promise<boolean>;
  close(): void;
}

/**
 * Yes/no questions on a terminal (undefined without one). One readline for the whole run, with
 * the lines it reads queued, so answers typed ahead are not lost between questions.
 */
function terminal(): Terminal | undefined {
  if (!process.stdin.isTTY || !process.stdout.isTTY) return undefined;
  let rl: Interface | undefined;
  let closed = false;
  const lines: string[] = [];
  const waiting: Array<(line: string | undefined) => void> = [];
  const open = () => {
    rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true });
    rl.on('line', (line) => {
      const w = waiting.shift();
      if (w) w(line);
      else lines.push(line);
    });
    rl.on('close', () => {
      closed = true;
      for (const w of waiting.splice(0)) w(undefined);
    });
  };
  return {
    async ask(question) {
      if (!rl) open();
      process.stdout.write(`${question} [y/N] `);
      const line = lines.shift() ?? (closed ? undefined : await new Promise<string | undefined>((r) => waiting.push(r)));
      if (line === undefined) throw new MegaError('migrations.aborted', 'no answer (input closed): nothing was written');
      return /^y(es)?$/i.test(line.trim());
    },
    close: () => rl?.close(),
  };
}

const STATE_WIDTH = 10;

function statusLines(entries: StatusEntry[]): string[] {
  if (!entries.length) return ['  no migrations'];
  return entries.map((e) => {
    const row = e.row;
    const extra = row
      ? e.state === 'partial' || e.state === 'reverting'
        ? ` (${row.steps} step(s) done${row.error ? `: ${row.error}` : ''})`
        : ` ${row.appliedAt.toISOString().replace('T', ' ').slice(0, 19)} (batch ${row.batch}, ${row.durationMs} ms)`
      : '';
    return `  ${e.state.padEnd(STATE_WIDTH)}${e.id}${extra}`;
  });
}

/** One line per entry that needs the user, saying what its state means and the way out. */
function statusHints(entries: StatusEntry[]): string[] {
  return entries.flatMap((e) => {
    if (e.state === 'drift')
      return [
        `  ! ${e.id} changed after it was applied: restore the file from version control, or accept it with mega migrate resolve ${e.id} --applied`,
      ];
    if (e.state === 'partial' || e.state === 'reverting')
      return [`  ! ${e.id} stopped part-way: repair the database by hand, then mega migrate resolve ${e.id} --applied (or --rolled-back)`];
    if (e.state === 'missing') return [`  ! ${e.id} is applied but its file is gone: restore it from version control`];
    return [];
  });
}

interface Parsed {
  values: {
    app?: string;
    db?: string;
    env?: string;
    to?: string;
    steps?: string;
    rename?: string[];
    'allow-destructive'?: boolean;
    empty?: boolean;
    baseline?: boolean;
    'dry-run'?: boolean;
    json?: boolean;
    verify?: boolean;
    applied?: boolean;
    'rolled-back'?: boolean;
    help?: boolean;
  };
  positionals: string[];
}

function parse(argv: string[]): Parsed {
  return parseArgs({
    args: argv,
    options: {
      app: { type: 'string' },
      db: { type: 'string' },
      env: { type: 'string' },
      to: { type: 'string' },
      steps: { type: 'string' },
      rename: { type: 'string', multiple: true },
      'allow-destructive': { type: 'boolean' },
      empty: { type: 'boolean' },
      baseline: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
      verify: { type: 'boolean' },
      applied: { type: 'boolean' },
      'rolled-back': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  }) as Parsed;
}

async function withService(
  io: CliIO,
  dir: string,
  app: string | undefined,
  fn: (s: MigrationsService, k: Kernel) => Promise<number>,
): Promise<number> {
  cliMode = true;
  let kernel: Kernel | undefined;
  try {
    kernel = await loadKernel({ dir, serve: false, logger: createLogger({ level: 'warn' }), ...(app ? { only: [app] } : {}) });
    await kernel.start();
    if (!kernel.has('migrations')) {
      io.stderr("mega migrate: @mega/migrations is not in this project's plugins; run: mega plugin add migrations");
      return 1;
    }
    return await fn(kernel.use<MigrationsService>('migrations'), kernel);
  } finally {
    await kernel?.stop('mega migrate done').catch(() => undefined);
  }
}

export const migrateCommand: CliCommand = {
  summary: 'migrations: generate <name> | up | down | redo | status | resolve',
  async run(argv, io) {
    let parsed: Parsed;
    try {
      parsed = parse(argv);
    } catch (error) {
      io.stderr(`mega migrate: ${(error as Error).message}\n\n${MIGRATE_HELP}`);
      return 2;
    }
    const { values: v, positionals } = parsed;
    const [cmd, arg] = positionals;
    const known = ['generate', 'up', 'down', 'redo', 'status', 'resolve'];
    if (v.help || !cmd || !known.includes(cmd)) {
      if (cmd && !known.includes(cmd)) io.stderr(`mega migrate: unknown command "${cmd}"`);
      io.stdout(MIGRATE_HELP);
      return v.help || !cmd ? 0 : 2;
    }
    const dir = findProjectDir(io.cwd);
    if (!dir) {
      io.stderr(`mega migrate: no mega.config.ts in ${io.cwd} or above`);
      return 1;
    }
    if (v.env) process.env.NODE_ENV = v.env;
    process.env.NODE_ENV ??= 'development';
    const reporter: Reporter = { log: io.stdout, warn: (l) => io.stderr(`warning: ${l}`) };
    const allowDestructive = v['allow-destructive'] === true;
    try {
      if (cmd === 'generate') {
        if (!arg && !v.baseline) {
          io.stderr('mega migrate generate: name the migration, e.g. mega migrate generate add-auth-to-users');
          return 2;
        }
        const tty = allowDestructive ? undefined : terminal();
        try {
          await generate(dir, {
            name: arg ?? 'baseline',
            app: v.app,
            db: v.db,
            renames: v.rename ?? [],
            allowDestructive,
            empty: v.empty === true,
            baseline: v.baseline === true,
            dryRun: v['dry-run'] === true,
            ask: tty?.ask,
            say: io.stdout,
            command: `mega migrate generate ${arg ?? ''}`.trim(),
          });
        } finally {
          tty?.close();
        }
        return 0;
      }
      if (cmd === 'resolve' && (!arg || v.applied === v['rolled-back'])) {
        io.stderr('mega migrate resolve <id> needs exactly one of --applied or --rolled-back');
        return 2;
      }
      const steps = v.steps === undefined ? undefined : Number(v.steps);
      if (steps !== undefined && (!Number.isInteger(steps) || steps < 1)) {
        io.stderr(`mega migrate: --steps must be a positive integer (got ${v.steps})`);
        return 2;
      }
      return await withService(io, dir, v.app, async (s) => {
        const only = { app: v.app, db: v.db };
        if (cmd === 'status') {
          const all = await s.status(only, reporter);
          const verify = v.verify ? await s.verify(only) : [];
          if (v.json) io.stdout(JSON.stringify({ targets: all, verify }, null, 2));
          else {
            for (const t of all) {
              io.stdout(`app ${t.app}, db ${t.alias} (${t.dialect})`);
              for (const line of statusLines(t.entries)) io.stdout(line);
              for (const line of statusHints(t.entries)) io.stdout(line);
              const problems = verify.find((x) => x.app === t.app && x.alias === t.alias)?.problems;
              if (problems)
                io.stdout(
                  problems.length
                    ? `  schema differs from the models:\n${problems.map((p) => `    ${p}`).join('\n')}`
                    : '  schema matches the models',
                );
            }
            if (!all.length) io.stdout('no migrations in this project (write one with: mega migrate generate <name>)');
          }
          const bad =
            all.some((t) => t.entries.some((e) => e.state === 'drift' || e.state === 'partial' || e.state === 'reverting')) ||
            verify.some((x) => x.problems.length);
          return bad ? 1 : 0;
        }
        if (cmd === 'resolve') {
          await s.resolve(arg as string, v.applied ? 'applied' : 'rolled-back', only, reporter);
          io.stdout(`recorded ${arg} as ${v.applied ? 'applied' : 'rolled back'}`);
          return 0;
        }
        const started = performance.now();
        // Migrations another process applied (or reverted) while this one waited for the lock are not counted.
        const total = (runs: Array<{ runs: Array<{ result: string }> }>) =>
          runs.reduce((n, r) => n + r.runs.filter((p) => p.result === 'done').length, 0);
        const took = () => `${Math.round(performance.now() - started)} ms`;
        if (cmd === 'up') {
          const n = total(await s.up({ ...only, to: v.to, allowDestructive }, reporter));
          io.stdout(n ? `applied ${n} migration(s) in ${took()}` : 'nothing to do: every migration is applied');
          return 0;
        }
        if (cmd === 'down') {
          const n = total(await s.down({ ...only, steps, to: v.to, allowDestructive }, reporter));
          io.stdout(n ? `reverted ${n} migration(s) in ${took()}` : 'nothing to do: no applied migration');
          return 0;
        }
        // redo: the newest applied migration of each target, down then up again.
        const down = await s.down({ ...only, steps: 1, allowDestructive }, reporter);
        let n = 0;
        for (const r of down) {
          const last = r.runs.at(-1);
          if (!last) continue;
          await s.up({ app: r.app, db: r.alias, to: last.id, allowDestructive }, reporter);
          n++;
        }
        io.stdout(
          n ? `redid ${down.flatMap((r) => r.runs.map((p) => p.id)).join(', ')} in ${took()}` : 'nothing to redo: no applied migration',
        );
        return 0;
      });
    } catch (error) {
      io.stderr(formatError(error));
      return 1;
    }
  },
};

/** `mega generate migration <name> [--app a] [--db alias] [--rename a:b] [--allow-destructive] [--empty]`. */
export const migrationGenerator: Generator = {
  summary: 'a migration from the model diff (same as mega migrate generate)',
  async run(name, project, options) {
    const str = (k: string) => (typeof options[k] === 'string' ? (options[k] as string) : undefined);
    const allowDestructive = options['allow-destructive'] === true;
    const tty = allowDestructive ? undefined : terminal();
    await generate(project.dir, {
      name,
      app: str('app'),
      db: str('db'),
      renames: str('rename') ? (str('rename') as string).split(',') : [],
      allowDestructive,
      empty: options.empty === true,
      baseline: false,
      dryRun: options['dry-run'] === true,
      ask: tty?.ask,
      say: project.log,
      command: `mega generate migration ${name}`,
    }).finally(() => tty?.close());
  },
};
