/**
 * Service adapters by alias (`services.dbs|caches|buses.<alias>`): the plumbing every data plugin
 * shares — operation stats with latency percentiles, alias resolution with `adapter.unknown_alias`,
 * URL checks and redaction — kept here so each adapter plugin does not carry a copy.
 */
import { ConfigError, MegaError, PluginError } from './errors.js';
import type { Kernel } from './kernel.js';

/** A readiness check: resolves when the dependency answers, rejects (with a MegaError) when not. */
export type HealthCheck = () => Promise<void>;

export interface LatencySnapshot {
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface OpStatsSnapshot {
  operations: number;
  errors: number;
  latency: LatencySnapshot;
}

const RING = 1024;

/** Counts operations and errors; keeps the last 1,024 latencies for percentiles (O(1) per record). */
export class OpStats {
  operations = 0;
  errors = 0;
  #totalMs = 0;
  #maxMs = 0;
  #ring = new Float64Array(RING);
  #next = 0;

  record(ms: number, failed: boolean): void {
    this.operations++;
    if (failed) this.errors++;
    this.#totalMs += ms;
    if (ms > this.#maxMs) this.#maxMs = ms;
    this.#ring[this.#next++ & (RING - 1)] = ms;
  }

  /** Runs one operation, recording its latency and whether it threw (the error is rethrown). */
  async time<T>(run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const value = await run();
      this.record(performance.now() - started, false);
      return value;
    } catch (error) {
      this.record(performance.now() - started, true);
      throw error;
    }
  }

  snapshot(): OpStatsSnapshot {
    const n = Math.min(this.#next, RING);
    const sorted = Array.from(this.#ring.subarray(0, n)).sort((a, b) => a - b);
    const at = (q: number) => round(sorted[Math.min(n - 1, Math.floor(q * n))] ?? 0);
    return {
      operations: this.operations,
      errors: this.errors,
      latency: {
        count: this.operations,
        meanMs: round(this.operations ? this.#totalMs / this.operations : 0),
        p50Ms: at(0.5),
        p99Ms: at(0.99),
        maxMs: round(this.#maxMs),
      },
    };
  }
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** `postgres://user:secret@host/db` -> `postgres://user:***@host/db` (for messages and logs). */
export function redactUrl(url: string | undefined): string | undefined {
  if (!url) return url;
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
  }
}

/** Parses a service URL; a malformed one or a wrong scheme stops boot naming the alias. */
export function parseServiceUrl(kind: string, alias: string, url: unknown, schemes: readonly string[]): URL {
  const where = `services.${kind}.${alias}.url`;
  if (typeof url !== 'string' || !url) {
    throw new ConfigError('adapter.invalid_url', `${where} is missing; expected ${schemes.map((s) => `${s}//...`).join(' or ')}`, {
      details: { kind, alias, url },
    });
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError('adapter.invalid_url', `${where} is not a valid URL: "${redactUrl(url)}"`, {
      details: { kind, alias, url: redactUrl(url) },
    });
  }
  if (!schemes.includes(parsed.protocol)) {
    throw new ConfigError(
      'adapter.invalid_url',
      `${where} must start with ${schemes.join(' or ')} (got "${parsed.protocol}" in "${redactUrl(url)}")`,
      { details: { kind, alias, url: redactUrl(url), schemes } },
    );
  }
  return parsed;
}

/**
 * Picks an alias: the one asked for, else `preferred`, else the only one. Unknown names throw
 * `adapter.unknown_alias` listing the known ones; several without a default throw `adapter.ambiguous_alias`.
 */
export function pickAlias(kind: string, known: readonly string[], alias: string | undefined, preferred: string): string {
  if (alias !== undefined) {
    if (known.includes(alias)) return alias;
    throw new MegaError(
      'adapter.unknown_alias',
      `no ${kind} alias "${alias}" (known: ${known.join(', ') || 'none'}); declare it in mega.config.ts under services.${kind}.${alias}`,
      { details: { kind, alias, known: [...known] } },
    );
  }
  if (known.includes(preferred)) return preferred;
  if (known.length === 1) return known[0] as string;
  if (known.length === 0) {
    throw new MegaError('adapter.unknown_alias', `no ${kind} is declared; add services.${kind}.${preferred} to mega.config.ts`, {
      details: { kind, alias: preferred, known: [] },
    });
  }
  throw new MegaError(
    'adapter.ambiguous_alias',
    `several ${kind} are declared (${known.join(', ')}) and none is called "${preferred}"; pass the alias explicitly`,
    { details: { kind, known: [...known] } },
  );
}

/** Rejects with `error()` when `promise` has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(error()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/* ---- ctx.db(alias?): one registry shared by every database plugin (db-postgres, db-mongo) ---- */

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
