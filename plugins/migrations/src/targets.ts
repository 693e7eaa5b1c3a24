/** Which (app, db alias) pairs have migrations in a booted kernel, and the backend that runs them. */
import type { AdapterRegistry } from '@mega/adapters';
import { isSqlDb } from '@mega/adapters';
import type { App, Kernel } from '@mega/kernel';
import { ConfigError } from '@mega/kernel';
import type { LayoutOptions, MigrationFile } from './files.js';
import { aliasFolders, type Layout, layoutOf, listMigrations } from './files.js';
import { defaultAliasOf } from './generate.js';
import type { Backend, RunnerOptions } from './runner.js';
import { isMongoAdapter, MongoBackend, SqlBackend } from './runner.js';

export interface Target {
  app: App;
  alias: string;
  layout: Layout;
  files: MigrationFile[];
  backend: Backend;
}

export function dbRegistry(kernel: Kernel): AdapterRegistry<unknown> | undefined {
  return kernel.has('adapters:dbs') ? kernel.use<AdapterRegistry<unknown>>('adapters:dbs') : undefined;
}

export function backendFor(adapter: unknown, alias: string, app: string, options: RunnerOptions): Backend {
  if (isSqlDb(adapter)) return new SqlBackend(adapter, app, options);
  if (isMongoAdapter(adapter)) return new MongoBackend(adapter, app, options);
  throw new ConfigError('migrations.unsupported_db', `db "${alias}" has no SQL (kysely) or MongoDB adapter that migrations can use`, {
    details: { alias },
  });
}

/**
 * Every (app, alias) with migration files, or exactly `only.db` when given (even without files, so
 * `status` can say so). `only.app` narrows to one app.
 */
export function targetsOf(
  kernel: Kernel,
  settings: LayoutOptions,
  runner: (app: App, alias: string) => RunnerOptions,
  only: { app?: string | undefined; db?: string | undefined } = {},
): Target[] {
  const registry = dbRegistry(kernel);
  const apps = only.app ? kernel.apps.filter((a) => a.name === only.app) : [...kernel.apps];
  if (only.app && !apps.length) {
    throw new ConfigError(
      'migrations.unknown_app',
      `no app "${only.app}" in this project (apps: ${kernel.apps.map((a) => a.name).join(', ')})`,
      {
        details: { app: only.app },
      },
    );
  }
  const out: Target[] = [];
  for (const app of apps) {
    const aliases = registry?.aliases ?? [];
    const defaultAlias = defaultAliasOf(app, aliases);
    const candidates = new Set<string>(aliasFolders(app.dir, settings.dir));
    if (listMigrations(layoutOf(app, defaultAlias, defaultAlias, settings).migrationsDir, kernel.dir).length) candidates.add(defaultAlias);
    const chosen = only.db ? [only.db] : [...candidates].sort();
    for (const alias of chosen) {
      const layout = layoutOf(app, alias, defaultAlias, settings);
      const files = listMigrations(layout.migrationsDir, kernel.dir);
      if (!registry) {
        throw new ConfigError(
          'migrations.no_db',
          `app ${app.name} has migrations for db "${alias}" but no database plugin is loaded: add one (mega plugin add db-postgres)`,
          {
            details: { app: app.name, alias },
          },
        );
      }
      out.push({ app, alias, layout, files, backend: backendFor(registry.get(alias), alias, app.name, runner(app, alias)) });
    }
  }
  return out;
}
