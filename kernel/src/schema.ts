/**
 * Config schemas, declared once. The kernel's own keys and every plugin's keys are TypeBox objects
 * (one source for the JSON Schema, the static type and the defaults); before any plugin runs, the
 * kernel checks both config files against them and reports every problem together: unknown keys
 * (with a close match), keys in the wrong file, schema errors with their paths, services whose
 * driver no loaded plugin serves, and secrets that are missing or too short.
 *
 * TypeBox over zod/valibot: its schemas are plain JSON Schema, so the same Ajv that validates
 * route bodies validates config, and `Static<>` gives the type without a second declaration.
 */
import { createHmac, hash, hkdfSync, randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import type { StringOptions, TObject, TSchema, TString } from '@sinclair/typebox';
import type { ErrorObject } from 'ajv';
import { Ajv } from 'ajv';
import type { App } from './apps.js';
import type { MegaConfig, ServiceDeclaration } from './config.js';
import { ConfigError, type MegaError } from './errors.js';
import type { Logger } from './logger.js';
import type { AnyPlugin } from './plugin.js';
import { Type } from './typebox.js';

/** One Ajv instance for the kernel; `source` keeps each validator's code for the cache below. */
const AJV_OPTIONS = { allErrors: true, strict: false, useDefaults: true, code: { source: true } };
export const ajv = new Ajv(AJV_OPTIONS);
const require = createRequire(import.meta.url);
const AJV_KEY = { version: require('ajv/package.json').version, ...AJV_OPTIONS };

const SECRET = 'x-mega-secret';
/** The least a secret may have in production, wherever it comes from. */
export const PRODUCTION_MIN_BYTES = 32;

export interface SecretSpec {
  /** Environment variable read when the config file has no value. */
  env: string;
  /** What it protects, for messages: `sessions`. */
  purpose: string;
  /** Minimum length in bytes, enforced on the file value and the environment value alike (default 16). */
  minBytes?: number;
  /** Error code when missing in production or too short (default `config.secret`). */
  code?: string;
  /** Fall back to the project-wide MEGA_SECRET (default true). */
  shared?: boolean;
  /** Missing in production is left to the plugin (it needs the secret only for an opt-in feature). */
  optional?: boolean;
}

/**
 * A secret config value. Filled from `spec.env` (then a key derived from MEGA_SECRET) when the file
 * has none, checked for `minBytes`; missing in production fails boot, in development a random one is
 * used with a warning. Its value never appears in an error or log line.
 */
export function Secret(spec: SecretSpec, options: StringOptions = {}): TString {
  return Type.String({ ...options, [SECRET]: spec });
}

const ServiceDecl = Type.Object({
  driver: Type.String({ minLength: 1 }),
  url: Type.Optional(Type.String()),
  optional: Type.Optional(Type.Boolean()),
});

/** The kernel's own keys of mega.config.ts. */
export const CoreGlobalConfig = Type.Object({
  apps: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$' }))),
  plugins: Type.Optional(Type.Array(Type.Unknown())),
  services: Type.Optional(Type.Record(Type.String(), Type.Record(Type.String(), ServiceDecl))),
  server: Type.Optional(
    Type.Object(
      {
        port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
        host: Type.Optional(Type.String()),
        trustProxy: Type.Optional(Type.Boolean()),
        bodyLimit: Type.Optional(Type.Integer({ minimum: 1 })),
      },
      { additionalProperties: false },
    ),
  ),
  logger: Type.Optional(
    Type.Object({
      level: Type.Optional(Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)))),
      pretty: Type.Optional(Type.Boolean()),
      redact: Type.Optional(Type.Array(Type.String())),
    }),
  ),
  lifecycle: Type.Optional(
    Type.Object({
      bootTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
      shutdownTimeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    }),
  ),
});

/** The kernel's own keys of app.config.ts. */
export const CoreAppConfig = Type.Object({ hosts: Type.Optional(Type.Array(Type.String({ minLength: 1 }))) });

const KERNEL = '@mega/kernel';
type Validate = ReturnType<typeof ajv.compile>;
const compiled = new WeakMap<object, Validate>();

export type CodeCache = { load(name: string, req: NodeJS.Require): unknown; store(name: string, code: () => string): void };
/**
 * Generated code (Ajv standalone validators: config here, routes in @mega/http) kept in the nearest node_modules/.cache/mega.
 * A file that does not load is a miss; a write renames a temporary file, so workers starting together never read half a
 * file and a corrupt one is replaced. Undefined without a node_modules above `dir`; a read-only one keeps nothing.
 */
export function codeCache(dir: string): CodeCache | undefined {
  let d = dir;
  for (; !existsSync(join(d, 'node_modules')); d = dirname(d)) if (dirname(d) === d) return undefined;
  const root = join(d, 'node_modules', '.cache', 'mega');
  return {
    load(name, req) {
      const module: { exports?: unknown } = {};
      try {
        new Function('require', 'module', 'exports', readFileSync(join(root, name), 'utf8'))(req, module, {});
      } catch {}
      return module.exports;
    },
    store(name, code) {
      try {
        mkdirSync(root, { recursive: true });
        writeFileSync(join(root, `${name}.${process.pid}.tmp`), code());
        renameSync(join(root, `${name}.${process.pid}.tmp`), join(root, name));
      } catch {} // read-only node_modules, or code that cannot be generated: made again at every start
    },
  };
}

/** A schema's validator. Ajv's code generation and meta-schema check cost 20-60 ms of a cold start: cached on disk. */
function validator(schema: TObject, dir: string): Validate {
  const known = compiled.get(schema);
  if (known) return known;
  const cache = codeCache(dir);
  const name = `config-${hash('sha256', JSON.stringify([AJV_KEY, schema])).slice(0, 32)}.cjs`;
  const loaded = cache?.load(name, require);
  const validate = typeof loaded === 'function' ? (loaded as Validate) : ajv.compile(schema);
  if (validate !== loaded) cache?.store(name, () => require('ajv/dist/standalone/index.js').default(ajv, validate));
  compiled.set(schema, validate);
  return validate;
}

/** Turns ajv errors into `{ path, message }` pairs. */
export function schemaErrors(errors: ErrorObject[] | null | undefined, prefix = ''): Array<{ path: string; message: string }> {
  return (errors ?? []).map((e) => ({
    path: `${prefix}${e.instancePath || ''}` || '/',
    message: `${e.message ?? 'is invalid'}${e.params && 'allowedValues' in e.params ? ` (${(e.params.allowedValues as unknown[]).join(', ')})` : ''}`,
  }));
}

/** Levenshtein distance, for "did you mean" on unknown keys. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min((row[j] as number) + 1, (next[j - 1] as number) + 1, (row[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length] as number;
}

export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const scored = [...candidates].map((c) => ({ c, d: distance(word.toLowerCase(), c.toLowerCase()) })).sort((a, b) => a.d - b.d);
  return scored[0] && scored[0].d <= Math.max(2, Math.floor(word.length / 3)) ? scored[0].c : undefined;
}

export interface ValidatedConfig {
  /** Plugin name -> its global keys, validated, defaults applied (what `setup` receives). */
  global: Map<string, Record<string, unknown>>;
  /** App name -> plugin name -> that app's validated keys. */
  apps: Map<string, Map<string, Record<string, unknown>>>;
  problems: MegaError[];
}

interface Input {
  dir: string;
  plugins: readonly AnyPlugin[];
  config: MegaConfig;
  apps: ReadonlyArray<Pick<App, 'name'> & { config: object; file?: string | undefined }>;
  configFile: string;
  env: string;
  log: Logger;
}

/** Copies plain config data so defaults do not leak into the user's objects; functions are kept by reference. */
function clonePlain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clonePlain);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clonePlain(v)]));
  }
  return value;
}

/** Validates both config files against the kernel's and every plugin's schemas; collects every problem. */
export function validateConfig(input: Input): ValidatedConfig {
  const problems: MegaError[] = [];
  const owners = { global: new Map<string, string>(), app: new Map<string, string>() };
  const schemas = new Map<string, { global?: TObject; app?: TObject }>([[KERNEL, { global: CoreGlobalConfig, app: CoreAppConfig }]]);
  for (const p of input.plugins) if (p.config) schemas.set(p.name, p.config);
  for (const [plugin, decl] of schemas) {
    for (const scope of ['global', 'app'] as const) {
      for (const key of Object.keys(decl[scope]?.properties ?? {})) {
        const taken = owners[scope].get(key);
        if (taken) {
          const message = `"${key}" is declared by both ${taken} and ${plugin}`;
          problems.push(new ConfigError('plugin.config_conflict', message, { details: { key, plugins: [taken, plugin] } }));
        } else owners[scope].set(key, plugin);
      }
    }
  }
  const appFile = (app: Input['apps'][number]) => (app.file ? relative(input.dir, app.file) : `apps/${app.name}/app.config.ts`);
  const checkKeys = (file: string, values: object, scope: 'global' | 'app') => {
    const other = scope === 'global' ? 'app' : 'global';
    for (const key of Object.keys(values)) {
      if (owners[scope].has(key)) continue;
      const owner = owners[other].get(key);
      if (owner) {
        const belongsIn = scope === 'global' ? 'apps/<name>/app.config.ts' : input.configFile;
        const message = `"${key}" (${owner}) is not allowed in ${file}; it belongs in ${belongsIn}`;
        problems.push(new ConfigError('config.scope_violation', message, { details: { key, file, belongsIn } }));
        continue;
      }
      const hint = closest(key, [...owners.global.keys(), ...owners.app.keys()]);
      const message = `${file}: unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ''}; no loaded plugin declares it (add its plugin to plugins, or remove the key)`;
      problems.push(new ConfigError('config.unknown_key', message, { details: { key, file, ...(hint ? { suggestion: hint } : {}) } }));
    }
  };
  const validate = (plugin: string, schema: TObject, values: Record<string, unknown>, file: string, app?: string) => {
    const data: Record<string, unknown> = {};
    for (const key of Object.keys(schema.properties)) if (values[key] !== undefined) data[key] = clonePlain(values[key]);
    // Secrets first (a required one is filled from the environment before Ajv would call it missing).
    resolveSecrets(schema, data, { dir: input.dir, file, app, env: input.env, log: input.log, problems });
    const check = validator(schema, input.dir);
    if (!check(data)) {
      const errors = schemaErrors(check.errors);
      const message = `invalid configuration in ${file}: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}`;
      problems.push(new ConfigError('config.invalid', message, { details: { file, plugin, errors } }));
    }
    return data;
  };

  const globalValues = input.config as Record<string, unknown>;
  checkKeys(input.configFile, globalValues, 'global');
  for (const app of input.apps) checkKeys(appFile(app), app.config, 'app');

  const result: ValidatedConfig = { global: new Map(), apps: new Map(), problems };
  for (const [plugin, decl] of schemas) {
    if (decl.global) result.global.set(plugin, validate(plugin, decl.global, globalValues, input.configFile));
    if (!decl.app) continue;
    for (const app of input.apps) {
      const map = result.apps.get(app.name) ?? new Map<string, Record<string, unknown>>();
      result.apps.set(app.name, map);
      map.set(plugin, validate(plugin, decl.app, app.config as Record<string, unknown>, appFile(app), app.name));
    }
  }
  checkDrivers(input.plugins, input.config.services ?? {}, problems);
  return result;
}

/** Every `services.<kind>.<alias>.driver` must be declared by a loaded plugin. */
function checkDrivers(
  plugins: readonly AnyPlugin[],
  services: Record<string, Record<string, ServiceDeclaration>>,
  problems: MegaError[],
): void {
  for (const [kind, aliases] of Object.entries(services)) {
    if (!aliases || typeof aliases !== 'object') continue;
    const known = plugins.flatMap((p) => p.drivers?.[kind] ?? []);
    for (const [alias, decl] of Object.entries(aliases)) {
      const driver = decl?.driver;
      if (typeof driver === 'string' && known.includes(driver)) continue;
      const message = `services.${kind}.${alias}: no loaded plugin serves driver "${driver}" (${known.length ? `known: ${known.join(', ')}` : `no plugin serves services.${kind}`}); add the plugin for it to plugins`;
      problems.push(new ConfigError('adapter.unknown_driver', message, { details: { kind, alias, driver, known } }));
    }
  }
}

/** Development without a configured secret: one random key per project in `.mega/dev-secret` (made once, see writeOnce),
 * each secret derived from it by its label; restarts, `--watch` and `--workers` then share sessions and CSRF tokens. */
function devSecret(dir: string, label: string): string {
  const file = join(dir, '.mega', 'dev-secret');
  if (!existsSync(file)) writeOnce(file, randomBytes(32).toString('base64url'), 0o600);
  return createHmac('sha256', readFileSync(file, 'utf8')).update(label).digest('base64url');
}

/** Creates `file` unless it exists; a link is atomic, so concurrent workers agree on one content. */
function writeOnce(file: string, content: string, mode?: number): void {
  mkdirSync(dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}`;
  writeFileSync(temp, content, { mode });
  try {
    linkSync(temp, file);
  } catch {
    // another process made it first: use theirs
  }
  unlinkSync(temp);
}

/** MEGA_SECRET is never handed out as is: each purpose (sessions, CSRF, ASP: by its env name) gets its own HKDF key. */
const derive = (key: string, label: string) => Buffer.from(hkdfSync('sha256', key, 'mega', label, 32)).toString('base64url');

type SecretScope = Pick<Input, 'dir' | 'env' | 'log'> & { file: string; app: string | undefined; problems: MegaError[] };

function resolveSecrets(schema: TSchema, data: Record<string, unknown>, scope: SecretScope, path = ''): void {
  const props = (schema as Partial<TObject>).properties;
  if (!props) return;
  for (const [key, sub] of Object.entries(props)) {
    const where = path ? `${path}.${key}` : key;
    const spec = (sub as Record<string, unknown>)[SECRET] as SecretSpec | undefined;
    if (!spec) {
      // Objects holding a secret carry `default: {}`: applied here already so the walk reaches the secret.
      if (data[key] === undefined && (sub as Partial<TObject>).properties && 'default' in sub) data[key] = clonePlain(sub.default);
      const value = data[key];
      if (value && typeof value === 'object' && !Array.isArray(value)) resolveSecrets(sub, value as Record<string, unknown>, scope, where);
      continue;
    }
    const code = spec.code ?? 'config.secret';
    const fromFile = typeof data[key] === 'string' ? (data[key] as string) : undefined;
    const fromEnv = fromFile === undefined && process.env[spec.env] !== undefined;
    const value = fromFile ?? process.env[spec.env] ?? (spec.shared === false ? undefined : process.env.MEGA_SECRET);
    const source = fromFile !== undefined ? `${where} in ${scope.file}` : fromEnv ? spec.env : 'MEGA_SECRET';
    const how = `set ${where} in ${scope.file} or ${spec.env}`;
    // Production holds every secret, from any source, to 32 bytes at least; development warns.
    const minBytes = Math.max(spec.minBytes ?? 16, scope.env === 'production' ? PRODUCTION_MIN_BYTES : 0);
    const bytes = value === undefined ? 0 : Buffer.byteLength(value);
    if (value !== undefined && bytes < minBytes) {
      const message = `${scope.app ? `app ${scope.app}: ` : ''}the ${spec.purpose} secret (from ${source}) must be at least ${minBytes} bytes; ${how}`;
      scope.problems.push(new ConfigError(code, message, { details: { key: where, file: scope.file, source, minBytes } }));
    } else if (value !== undefined) {
      const short = `the ${spec.purpose} secret is shorter than ${PRODUCTION_MIN_BYTES} bytes: production refuses it`;
      if (bytes < PRODUCTION_MIN_BYTES) scope.log.warn({ app: scope.app, key: where, source }, short);
      data[key] = source === 'MEGA_SECRET' ? derive(value, `mega.secret.v1:${spec.env}`) : value;
    } else if (scope.env === 'production') {
      const message = `${scope.app ? `app ${scope.app}: ` : ''}${spec.purpose} need a secret in production; ${how}`;
      if (!spec.optional) scope.problems.push(new ConfigError(code, message, { details: { key: where, file: scope.file } }));
    } else {
      scope.log.warn({ app: scope.app }, `no ${where} configured; using the project's development secret (.mega/dev-secret)`);
      data[key] = devSecret(scope.dir, `${scope.app ?? ''}:${where}`);
    }
  }
}
