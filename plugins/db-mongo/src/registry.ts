/**
 * `ctx.db(alias?)` is shared by every database plugin (@mega/db-postgres, @mega/db-mongo): the
 * first one set up creates the registry and the ctx/app members, the others add their aliases to
 * it. Each plugin carries this same small file, so either can be installed alone.
 */
import type { Kernel } from '@mega/kernel';
import { ConfigError, PluginError, pickAlias } from '@mega/kernel';

export interface DbAdapter {
  readonly alias: string;
  readonly driver: string;
  stats(): unknown;
  check(): Promise<void>;
}

export interface DbRegistry {
  readonly aliases: string[];
  get(alias?: string): DbAdapter;
  add(db: DbAdapter): void;
}

const DEFAULT_ALIAS = 'primary';

/** Which plugin serves which `services.dbs.<alias>.driver`. */
export const DB_DRIVERS: Record<string, string> = {
  postgres: '@mega/db-postgres',
  postgresql: '@mega/db-postgres',
  pg: '@mega/db-postgres',
  pglite: '@mega/db-postgres',
  mongodb: '@mega/db-mongo',
  mongo: '@mega/db-mongo',
};

export function dbRegistry(kernel: Kernel, plugin: string): DbRegistry {
  if (kernel.has('dbs')) return kernel.use<DbRegistry>('dbs');
  const dbs = new Map<string, DbAdapter>();
  const registry: DbRegistry = {
    get aliases() {
      return [...dbs.keys()];
    },
    get: (alias) => dbs.get(pickAlias('dbs', [...dbs.keys()], alias, DEFAULT_ALIAS)) as DbAdapter,
    add: (db) => void dbs.set(db.alias, db),
  };
  kernel.provide('dbs', registry, plugin);
  const dbOf = (alias?: string) => registry.get(alias);
  kernel.contributeCtx('db', () => dbOf, plugin);
  kernel.contributeApp('db', () => dbOf);
  return registry;
}

/** This plugin's aliases; a driver no plugin knows, or whose plugin is not loaded, stops boot. */
export function ownAliases(kernel: Kernel, plugin: string): string[] {
  const loaded = new Set(kernel.plugins.map((p) => p.name));
  const mine: string[] = [];
  for (const [alias, decl] of Object.entries(kernel.config.services?.dbs ?? {})) {
    const owner = DB_DRIVERS[decl.driver];
    if (!owner) {
      throw new ConfigError(
        'adapter.unknown_driver',
        `services.dbs.${alias}: unknown driver "${decl.driver}" (known: ${Object.keys(DB_DRIVERS).join(', ')})`,
        { details: { kind: 'dbs', alias, driver: decl.driver, known: Object.keys(DB_DRIVERS) } },
      );
    }
    if (owner === plugin) mine.push(alias);
    else if (!loaded.has(owner)) {
      throw new PluginError(
        'adapter.plugin_missing',
        `services.dbs.${alias} uses driver "${decl.driver}", served by ${owner}, which is not in plugins; run: mega plugin add ${owner}`,
        { plugin, details: { kind: 'dbs', alias, driver: decl.driver, plugin: owner } },
      );
    }
  }
  return mine;
}
