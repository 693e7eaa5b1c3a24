/**
 * The `migrations` service: status, up, down, resolve and verify over every (app, db alias) with
 * migrations. `mega migrate`, the boot check of `mega start` and tests all go through it.
 */

import { isSqlDb } from '@mega/adapters';
import type { App, Kernel } from '@mega/kernel';
import { ConfigError } from '@mega/kernel';
import { loadModels, snapshotsByDb } from '@mega/models';
import { emptySnapshot } from './diff.js';
import type { LoadedMigration } from './files.js';
import { loadMigration } from './files.js';
import { defaultAliasOf, modelsDirOf } from './generate.js';
import { compareSchema, introspectMongo, introspectSql } from './introspect.js';
import type { Direction, Progress, RunnerOptions, StatusEntry } from './runner.js';
import { isMongoAdapter, migrateDown, migrateUp, migrationStatus, resolveId, resolveMigration } from './runner.js';
import type { Target } from './targets.js';
import { dbRegistry, targetsOf } from './targets.js';

export interface MigrationsSettings {
  dir: string;
  journalDir: string;
  table: string;
  lockTimeoutMs: number;
  lockTtlMs: number;
}

export interface Only {
  app?: string | undefined;
  db?: string | undefined;
}

/** Where progress goes: a CLI prints, the boot logs. */
export interface Reporter {
  log(line: string): void;
  warn(line: string): void;
}

export interface TargetStatus {
  app: string;
  alias: string;
  dialect: string;
  entries: StatusEntry[];
}

export interface TargetRun {
  app: string;
  alias: string;
  dialect: string;
  runs: Progress[];
}

export interface MigrationsService {
  readonly settings: MigrationsSettings;
  targets(only?: Only): Target[];
  status(only?: Only, reporter?: Reporter): Promise<TargetStatus[]>;
  up(options: Only & { to?: string | undefined; allowDestructive?: boolean }, reporter?: Reporter): Promise<TargetRun[]>;
  down(
    options: Only & { steps?: number | undefined; to?: string | undefined; allowDestructive?: boolean },
    reporter?: Reporter,
  ): Promise<TargetRun[]>;
  /** Marks one migration applied (with the file's current checksum) or rolled back, without running it. */
  resolve(id: string, as: 'applied' | 'rolled-back', only?: Only, reporter?: Reporter): Promise<void>;
  /** Differences between the database and the app's models (empty when they match). */
  verify(only?: Only): Promise<Array<{ app: string; alias: string; problems: string[] }>>;
}

export const progressLine = (p: Progress) =>
  `  ${p.result === 'skipped' ? 'skip' : p.direction.padEnd(4)}  ${p.id} (${p.result === 'skipped' ? 'already done by another process' : `${p.ms} ms`})`;

/** Progress lines of one target, under a header printed before its first line. */
function progressTo(t: Target, reporter: Reporter): (p: Progress) => void {
  let headed = false;
  return (p) => {
    if (!headed) reporter.log(`app ${t.app.name}, db ${t.alias} (${t.backend.dialect})`);
    headed = true;
    reporter.log(progressLine(p));
  };
}

export function createService(kernel: Kernel, settings: MigrationsSettings, fallback: Reporter): MigrationsService {
  const runner =
    (reporter: Reporter) =>
    (_app: App, _alias: string): RunnerOptions => ({
      table: settings.table,
      lockTimeoutMs: settings.lockTimeoutMs,
      lockTtlMs: settings.lockTtlMs,
      log: reporter.log,
      warn: reporter.warn,
    });
  const targets = (only: Only = {}, reporter: Reporter = fallback) => targetsOf(kernel, settings, runner(reporter), only);
  const load = (t: Target): Promise<LoadedMigration[]> => Promise.all(t.files.map((f) => loadMigration(f, kernel.dir)));
  const production = kernel.env === 'production';
  const head = (t: Target) => ({ app: t.app.name, alias: t.alias, dialect: t.backend.dialect });

  return {
    settings,
    targets: (only) => targets(only),
    async status(only, reporter = fallback) {
      const out: TargetStatus[] = [];
      for (const t of targets(only, reporter)) out.push({ ...head(t), entries: await migrationStatus(t.backend, t.files) });
      return out;
    },
    async up(o, reporter = fallback) {
      const out: TargetRun[] = [];
      for (const t of targets(o, reporter)) {
        // Every file is imported before anything runs: a broken one stops the batch before it starts.
        const files = await load(t);
        if (o.to && !files.some((f) => f.id === o.to)) resolveId(files, o.to);
        const runs = await migrateUp(
          t.backend,
          files,
          { to: o.to, allowDestructive: o.allowDestructive === true, production },
          progressTo(t, reporter),
        );
        out.push({ ...head(t), runs });
      }
      return out;
    },
    async down(o, reporter = fallback) {
      const out: TargetRun[] = [];
      for (const t of targets(o, reporter)) {
        const files = await load(t);
        const runs = await migrateDown(
          t.backend,
          files,
          { steps: o.steps, to: o.to, allowDestructive: o.allowDestructive === true, production },
          progressTo(t, reporter),
        );
        out.push({ ...head(t), runs });
      }
      return out;
    },
    async resolve(id, as, only, reporter = fallback) {
      const matches = targets(only, reporter).flatMap((t) =>
        t.files.filter((f) => f.id === id || f.id.slice(15) === id).map((f) => ({ t, f })),
      );
      if (matches.length !== 1) {
        throw new ConfigError(
          'migrations.unknown_target',
          `${id} names ${matches.length ? 'migrations of several apps or dbs (pass --app / --db)' : 'no migration'}`,
          {
            details: { id, matches: matches.map((m) => `${m.t.app.name}/${m.t.alias}/${m.f.id}`) },
          },
        );
      }
      const { t, f } = matches[0] as { t: Target; f: (typeof matches)[number]['f'] };
      await resolveMigration(t.backend, f, as);
    },
    async verify(only) {
      const out: Array<{ app: string; alias: string; problems: string[] }> = [];
      const registry = dbRegistry(kernel);
      for (const t of targets(only)) {
        const models = await loadModels(t.app.dir, { dir: modelsDirOf(kernel.config) });
        const expected =
          (models.length ? snapshotsByDb(models, defaultAliasOf(t.app, registry?.aliases ?? [])) : {})[t.alias] ?? emptySnapshot();
        const adapter = registry?.get(t.alias);
        const actual = isSqlDb(adapter)
          ? await introspectSql(adapter.kysely(), adapter.dialect)
          : isMongoAdapter(adapter)
            ? await introspectMongo(adapter.db)
            : [];
        out.push({ app: t.app.name, alias: t.alias, problems: compareSchema(expected, actual, t.backend.dialect) });
      }
      return out;
    },
  };
}

export type { Direction };
