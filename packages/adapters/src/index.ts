/**
 * Service adapters by alias (`services.<kind>.<alias>`): the plumbing every data plugin shares —
 * one connect/close/health skeleton (`AdapterSet`), operation stats with latency percentiles, alias
 * resolution with `adapter.unknown_alias`, URL checks and redaction, the one timeout helper — kept
 * here so each adapter plugin does not carry a copy.
 */
import type { App, Logger, PluginApi, ServiceDeclaration, Static, TObject } from '@mega/kernel';
import { ConfigError, MegaError } from '@mega/kernel';
import { Value } from '@sinclair/typebox/value';

export { within } from '@mega/kernel';
export type { AnyTables, SqlDb, SqlDialect, SqlResult, SqlStatement } from './sql.js';
export { isSqlDb, sqlSpan, traceStatement } from './sql.js';
export type { MegaTracer, TraceAttributes, TraceAttributeValue, TraceCarrier, TraceSpan, TraceSpanKind } from './trace.js';
export { TRACE_HEADERS } from './trace.js';

export interface LatencySnapshot {
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Cumulative since start, for histograms (@mega/metrics): sum of all latencies, and counts per OP_BUCKETS_MS bound (+ one over the last). */
  sumMs: number;
  buckets: number[];
}

export interface OpStatsSnapshot {
  operations: number;
  errors: number;
  latency: LatencySnapshot;
}

const RING = 1024;
/** Upper bounds (ms, inclusive) of `LatencySnapshot.buckets`. */
export const OP_BUCKETS_MS: readonly number[] = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/** Counts operations and errors; keeps the last 1,024 latencies for percentiles (O(1) per record). */
export class OpStats {
  operations = 0;
  errors = 0;
  #totalMs = 0;
  #maxMs = 0;
  #ring = new Float64Array(RING);
  #next = 0;
  #buckets = new Array<number>(OP_BUCKETS_MS.length + 1).fill(0);

  record(ms: number, failed: boolean): void {
    this.operations++;
    if (failed) this.errors++;
    this.#totalMs += ms;
    if (ms > this.#maxMs) this.#maxMs = ms;
    this.#ring[this.#next++ & (RING - 1)] = ms;
    let i = 0;
    while (i < OP_BUCKETS_MS.length && ms > (OP_BUCKETS_MS[i] as number)) i++;
    this.#buckets[i] = (this.#buckets[i] as number) + 1;
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
        sumMs: this.#totalMs,
        buckets: [...this.#buckets],
      },
    };
  }
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

const SECRET_PARAM = /pass|secret|token|key|auth/i;

/**
 * `postgres://user:secret@host/db` -> `postgres://user:***@host/db`: THE redaction for every URL in
 * an error or log line. Also masks a NATS token (`nats://token@host` -> `nats://***@host`), query
 * parameters that look like credentials (`?password=`), and each entry of a comma-separated server
 * list (`nats://a:1,nats://b:2`, `mongodb://u:p@h1,h2/db`). Text that is not a URL is returned as is,
 * with any `//user:pass@` in it masked.
 */
export function redactUrl(url: string): string;
export function redactUrl(url: string | undefined): string | undefined;
export function redactUrl(url: string | undefined): string | undefined {
  if (!url) return url;
  if (url.includes(',')) {
    return url
      .split(',')
      .map((part) => redactUrl(part.trim()))
      .join(',');
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.replace(
      /\/\/([^/@\s]*)@/g,
      (_all, info: string) => `//${info.includes(':') ? `${info.slice(0, info.indexOf(':'))}:***` : '***'}@`,
    );
  }
  if (u.password) u.password = '***';
  // A lone user part is a token for NATS (`nats://<token>@host`); elsewhere it is a user name.
  else if (u.username && /^(nats|tls|ws|wss):$/.test(u.protocol)) u.username = '***';
  for (const key of [...u.searchParams.keys()]) if (SECRET_PARAM.test(key)) u.searchParams.set(key, '***');
  return u.toString();
}

/** Every URL inside free text (a driver's error message) through `redactUrl`. */
export function redactText(text: string): string {
  return text.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s"'<>,]+/gi, (url) => redactUrl(url));
}

/**
 * What a log line may carry about a driver's error: its class name, code and message (URLs
 * redacted), never the error object itself. Drivers hang their connection objects on errors (`pg`'s
 * pool sets `err.client`, whose `secretKey` and connection parameters a logger would serialise), so
 * every adapter log line uses this instead of `{ err: error }`.
 */
export function errorSummary(error: unknown): { type: string; code?: string; message: string } {
  if (!(error instanceof Error)) return { type: typeof error, message: redactText(String(error)) };
  const code = (error as { code?: unknown }).code;
  return {
    type: error.constructor?.name ?? error.name,
    ...(typeof code === 'string' || typeof code === 'number' ? { code: String(code) } : {}),
    message: redactText(error.message),
  };
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
 * One `services.<kind>.<alias>` declaration checked against the driver's TypeBox schema, defaults
 * applied (on a copy): the schema is the one source of the declaration's type and defaults. Problems
 * fail with `config.invalid` listing each path.
 */
export function serviceOptions<T extends TObject>(kind: string, alias: string, declaration: ServiceDeclaration, schema: T): Static<T> {
  const value = Value.Default(schema, Value.Clone(declaration)) as unknown;
  if (Value.Check(schema, value)) return value;
  const errors = [...Value.Errors(schema, value)].map((e) => `${e.path || '/'} ${e.message}`);
  throw new ConfigError('config.invalid', `services.${kind}.${alias}: ${errors.join('; ')}`, {
    details: { kind, alias, errors, ...(typeof declaration.url === 'string' ? { url: redactUrl(declaration.url) } : {}) },
  });
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

/** One connection to a declared service, owned by the plugin that serves its driver. */
export interface Adapter {
  readonly alias: string;
  /** The service's URL, redacted: log lines name it. */
  readonly url?: string | undefined;
  /** Connects (a round trip); rejects with a MegaError naming the alias and the redacted URL. */
  connect(): Promise<void>;
  /**
   * Called once after an `optional` alias failed to connect at boot: keep trying in the background.
   * Leave it out when the client reconnects by itself (ioredis, pg pools, MongoClient do).
   */
  retry?(): void;
  close(): Promise<void>;
  /** Resolves when the service answers (a round trip), rejects with a MegaError when not. */
  check(): Promise<void>;
}

export interface AdapterSetOptions {
  /** `services.<kind>`: dbs, caches, buses. */
  kind: string;
  /** The alias used when none is given and several exist. */
  preferred: string;
  /** Health check names: `<label>:<alias>` (default: the kind without its plural s). */
  label?: string;
}

interface Entry<A> {
  adapter: A;
  optional: boolean;
}

/**
 * The adapter-plugin skeleton: every alias of one kind this plugin owns. `attach(api)` registers one
 * health check per alias (`<label>:<alias>`), connects them all at boot (a declaration with
 * `optional: true` only warns, then `retry()`), and closes them all at shutdown.
 */
export class AdapterSet<A extends Adapter> {
  readonly #items = new Map<string, Entry<A>>();
  readonly #options: AdapterSetOptions;

  constructor(options: AdapterSetOptions) {
    this.#options = options;
  }

  get kind(): string {
    return this.#options.kind;
  }

  /** `label:alias`, the name of an alias's health check. */
  checkName(alias: string): string {
    return `${this.#options.label ?? this.#options.kind.replace(/s$/, '')}:${alias}`;
  }

  add(adapter: A, optional = false): A {
    this.#items.set(adapter.alias, { adapter, optional });
    return adapter;
  }

  /** Adds one adapter per `services.<kind>` entry whose driver this plugin declared (`api.services(kind)`). */
  addDeclared(api: PluginApi<unknown>, make: (alias: string, declaration: ServiceDeclaration) => A): this {
    for (const [alias, declaration] of api.services(this.#options.kind)) this.add(make(alias, declaration), declaration.optional === true);
    return this;
  }

  get aliases(): string[] {
    return [...this.#items.keys()];
  }

  get size(): number {
    return this.#items.size;
  }

  has(alias: string): boolean {
    return this.#items.has(alias);
  }

  /** Whether `alias` was declared `optional: true`. */
  optional(alias: string): boolean {
    return this.#items.get(alias)?.optional === true;
  }

  /** The adapter called `alias`; without one, the preferred alias or the only one (`adapter.unknown_alias` otherwise). */
  get(alias?: string): A {
    const name = pickAlias(this.#options.kind, this.aliases, alias, this.#options.preferred);
    return (this.#items.get(name) as Entry<A>).adapter;
  }

  all(): A[] {
    return [...this.#items.values()].map((i) => i.adapter);
  }

  /** Health per alias now, connect at boot, close at shutdown; all attributed to `api`'s plugin. */
  attach(api: PluginApi<unknown>): this {
    for (const { adapter } of this.#items.values()) api.health(this.checkName(adapter.alias), () => adapter.check());
    api.tap('boot', () => this.connectAll(api.log));
    api.onShutdown(() => this.closeAll(api.log));
    return this;
  }

  /** Connects every adapter in parallel; the first required failure rejects, optional ones warn and retry. */
  async connectAll(log: Logger): Promise<void> {
    await Promise.all(
      [...this.#items.values()].map(async ({ adapter, optional }) => {
        try {
          await adapter.connect();
          log.debug(
            { alias: adapter.alias },
            `${this.checkName(adapter.alias)} connected${adapter.url ? ` (${redactUrl(adapter.url)})` : ''}`,
          );
        } catch (error) {
          if (!optional) throw error;
          log.warn(
            { err: errorSummary(error), alias: adapter.alias },
            `${redactText((error as Error).message)}; optional, retrying in the background`,
          );
          adapter.retry?.();
        }
      }),
    );
  }

  /** Closes every adapter; a failing close is logged, the others still close. */
  async closeAll(log: Logger): Promise<void> {
    await Promise.all(
      this.all().map((adapter) =>
        adapter
          .close()
          .catch((error: unknown) =>
            log.warn({ err: errorSummary(error), alias: adapter.alias }, `closing ${this.checkName(adapter.alias)} failed`),
          ),
      ),
    );
  }
}

/**
 * A registry several plugins share for one kind (`ctx.db(alias?)` holds PostgreSQL and MongoDB
 * aliases alike): the first plugin to ask creates it and contributes the ctx and app members.
 */
export interface AdapterRegistry<T> {
  readonly aliases: string[];
  get(alias?: string): T;
  add(alias: string, adapter: T): void;
}

export function sharedRegistry<T>(api: PluginApi<unknown>, kind: string, member: string, preferred: string): AdapterRegistry<T> {
  const service = `adapters:${kind}`;
  if (api.has(service)) return api.use<AdapterRegistry<T>>(service);
  const items = new Map<string, T>();
  const registry: AdapterRegistry<T> = {
    get aliases() {
      return [...items.keys()];
    },
    get: (alias) => items.get(pickAlias(kind, [...items.keys()], alias, preferred)) as T,
    add: (alias, adapter) => void items.set(alias, adapter),
  };
  api.provide(service, registry);
  const of = (alias?: string) => registry.get(alias);
  api.contributeCtx(member, () => of);
  api.contributeApp(member, (_app: App) => of);
  return registry;
}

/**
 * A database plugin's whole setup: one adapter per `services.dbs` alias of its drivers (plus
 * `fallback()` when no database of any driver is declared), connected at boot, closed at shutdown,
 * and reachable through the shared `ctx.db(alias?)` registry.
 */
export function registerDbAdapters<A extends Adapter>(
  api: PluginApi<unknown>,
  options: { make: (alias: string, declaration: ServiceDeclaration) => A; fallback?: () => A },
): AdapterSet<A> {
  const dbs = new AdapterSet<A>({ kind: 'dbs', preferred: 'primary' }).addDeclared(api, options.make);
  if (options.fallback && Object.keys(api.kernel.config.services?.dbs ?? {}).length === 0) dbs.add(options.fallback());
  dbs.attach(api);
  const registry = sharedRegistry<A>(api, 'dbs', 'db', 'primary');
  for (const db of dbs.all()) registry.add(db.alias, db);
  return dbs;
}
