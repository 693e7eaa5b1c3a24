/**
 * @mega/migrations: migrations generated from the model diff, a journal of the schema they build,
 * `mega_migrations` records with checksums (drift is refused), a lock per database, and a boot
 * check for `mega start` (apply pending migrations, or refuse to serve with them).
 */
import type { ConfigInput, Static } from '@mega/kernel';
import { ConfigError, definePlugin, isMegaError, packageVersion, Type } from '@mega/kernel';
import { isMigrateCommand, migrateCommand, migrationGenerator } from './cli.js';
import type { MigrationsService, Only, TargetStatus } from './service.js';
import { createService } from './service.js';

export type { RenderInput } from './codegen.js';
export { jsonSchemaOf, renderMigration } from './codegen.js';
export type { Diff, Op, RenameCandidate, Renames, TableChange } from './diff.js';
export { diffSnapshots, emptySnapshot, hasDestructive, isDestructive, normalizeSnapshot, normalizeTable, parseRenames } from './diff.js';
export type { Layout, LoadedMigration, MigrationFile } from './files.js';
export { checksumOf, layoutOf, listMigrations, loadMigration, migrationSlug, timestampFor } from './files.js';
export type { Generated, GenerateOptions } from './generate.js';
export { generate } from './generate.js';
export type { DbColumn, DbForeignKey, DbIndex, DbTable } from './introspect.js';
export { compareSchema, introspectMongo, introspectSql } from './introspect.js';
export type { JournalEntry } from './journal.js';
export { readJournal } from './journal.js';
export type { AppliedRow, Backend, MigrationState, Progress, StatusEntry } from './runner.js';
export { MongoBackend, SqlBackend, statusOf } from './runner.js';
export type { MigrationsService, MigrationsSettings, Only, Reporter, TargetRun, TargetStatus } from './service.js';
export type { SqlType, SqlTypes } from './sql-types.js';
export { sqlTypes } from './sql-types.js';
export type {
  Dialect,
  JsonSchemaDoc,
  Migration,
  MigrationContext,
  MongoMigration,
  MongoMigrationContext,
  SqlMigration,
  SqlMigrationContext,
} from './types.js';

/** `migrations` in mega.config.ts (global only). */
export const MigrationsGlobalConfig = Type.Object({
  migrations: Type.Object(
    {
      /** Apply pending migrations when the project boots (`mega start`, `mega worker`). Default: on, except when NODE_ENV is production. */
      auto: Type.Optional(Type.Boolean()),
      /** Refuse to boot (`migrations.pending`) while a migration is pending (and auto is off). */
      requireApplied: Type.Boolean({ default: false }),
      /** Migration files inside each app; other aliases in `<dir>/<alias>/`. */
      dir: Type.String({ minLength: 1, default: 'migrations' }),
      /** The journal (schema snapshots) inside each app; commit it with the migrations. */
      journalDir: Type.String({ minLength: 1, default: '.mega/journal' }),
      /** The table / collection recording applied migrations. */
      table: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', default: 'mega_migrations' }),
      /** How long to wait for another process's migration lock before `migrations.lock_timeout`. */
      lockTimeoutMs: Type.Integer({ minimum: 100, default: 60_000 }),
      /** MongoDB lock lease, renewed every third of it while held; a crashed holder frees the lock after it. */
      lockTtlMs: Type.Integer({ minimum: 1000, default: 30_000 }),
    },
    { additionalProperties: false, default: {} },
  ),
});
export type MigrationsConfig = Static<typeof MigrationsGlobalConfig>['migrations'];

declare module '@mega/kernel' {
  interface MegaConfig {
    migrations?: ConfigInput<typeof MigrationsGlobalConfig>['migrations'];
  }
  interface MegaServices {
    migrations: MigrationsService;
  }
}

export default definePlugin({
  name: '@mega/migrations',
  version: packageVersion(new URL('../package.json', import.meta.url)),
  kernel: '^0.2.0',
  dependsOn: ['@mega/models'],
  // Adapters connect in their boot taps; the boot check needs them connected.
  after: ['@mega/db-postgres', '@mega/db-sqlite', '@mega/db-mariadb', '@mega/db-mongo'],
  config: { global: MigrationsGlobalConfig },
  commands: { migrate: migrateCommand },
  generators: { migration: migrationGenerator },
  // Applying migrations at boot can take a while (one line is logged per migration).
  bootTimeoutMs: 15 * 60_000,
  setup(api, config) {
    const c = config.migrations;
    const log = api.log;
    const service = createService(api.kernel, c, {
      log: (l) => log.info(`migrations: ${l.trim()}`),
      warn: (l) => log.warn(`migrations: ${l}`),
    });
    api.provide('migrations', service);
    api.tap('boot', async () => {
      if (isMigrateCommand()) return;
      const auto = c.auto ?? api.kernel.env !== 'production';
      const status: TargetStatus[] = [];
      const reachable: Only[] = [];
      for (const t of service.targets()) {
        const only = { app: t.app.name, db: t.alias };
        try {
          status.push(...(await service.status(only)));
          reachable.push(only);
        } catch (error) {
          // An `optional` database that is down at boot: the app starts; its migrations wait for the next boot or mega migrate.
          if (!isMegaError(error) || error.code !== 'db.unavailable') throw error;
          log.warn(
            { app: t.app.name, alias: t.alias },
            `migrations: db "${t.alias}" is unavailable; the migrations of app ${t.app.name} were not checked`,
          );
        }
      }
      const pending: string[] = [];
      for (const t of status) {
        const drift = t.entries.filter((e) => e.state === 'drift').map((e) => e.id);
        if (drift.length && (auto || c.requireApplied)) {
          throw new ConfigError(
            'migrations.drift',
            `app ${t.app}, db ${t.alias}: migration(s) ${drift.join(', ')} changed after they were applied; restore them (see mega migrate status)`,
            {
              details: { app: t.app, alias: t.alias, drift },
            },
          );
        }
        for (const e of t.entries) if (e.state === 'pending' || e.state === 'partial') pending.push(`${t.app}/${t.alias}/${e.id}`);
      }
      if (!pending.length) return;
      if (auto) {
        const started = performance.now();
        let n = 0;
        for (const only of reachable) for (const r of await service.up(only)) n += r.runs.filter((p) => p.result === 'done').length;
        log.info({ migrations: n }, `migrations: applied ${n} migration(s) in ${Math.round(performance.now() - started)} ms`);
        return;
      }
      if (c.requireApplied) {
        throw new ConfigError(
          'migrations.pending',
          `${pending.length} migration(s) not applied: ${pending.join(', ')}. Run mega migrate up (or set migrations.auto: true) before serving`,
          { details: { pending } },
        );
      }
      log.warn({ pending }, `migrations: ${pending.length} migration(s) not applied (${pending.join(', ')}); run: mega migrate up`);
    });
  },
});
