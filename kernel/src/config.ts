/**
 * Project configuration: `mega.config.ts` (global) + `apps/<name>/app.config.ts` (per app), loaded
 * as TypeScript without a build step (jiti, with its transform cache), `.env` first.
 *
 * Keys have a home: a global-only key in an app file, or an app-only key in the global file, stops
 * boot with `config.scope_violation` naming the key, the file, and the file where it belongs.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import type { ErrorObject } from 'ajv';
import { Ajv } from 'ajv';
import { createJiti } from 'jiti';
import { ConfigError, isMegaError } from './errors.js';
import type { LoggerConfig } from './logger.js';
import type { PluginDefinition } from './plugin.js';

export interface ServiceDeclaration {
  driver: string;
  url?: string;
  [option: string]: unknown;
}

/** Global configuration. Plugins add their keys by declaration merging. */
export interface MegaConfig {
  /** App names to run (directories under `apps/`); default: every directory there. */
  apps?: string[];
  /** Plugins by package name, or inline definitions. */
  plugins?: Array<string | PluginDefinition<never>>;
  services?: {
    dbs?: Record<string, ServiceDeclaration>;
    caches?: Record<string, ServiceDeclaration>;
    buses?: Record<string, ServiceDeclaration>;
  };
  server?: { port?: number; host?: string; trustProxy?: boolean; bodyLimit?: number };
  logger?: LoggerConfig;
  /** Per-plugin boot timeout and per-step shutdown bound. */
  lifecycle?: { bootTimeoutMs?: number; shutdownTimeoutMs?: number };
  jobs?: unknown;
  schedules?: unknown;
  workers?: unknown;
  watch?: unknown;
  wsCluster?: unknown;
}

/** Per-app configuration. Plugins add their keys by declaration merging. */
export interface AppConfig {
  /** Host names (vhost routing); none means the default app. */
  hosts?: string[];
  routesDir?: string;
  channelsDir?: string;
  bridgeHub?: unknown;
  asp?: unknown;
  security?: unknown;
  session?: unknown;
  lock?: unknown;
  bus?: unknown;
}

export const defineConfig = <T extends MegaConfig>(config: T): T => config;
export const defineAppConfig = <T extends AppConfig>(config: T): T => config;

export const GLOBAL_ONLY_KEYS = new Set([
  'apps',
  'plugins',
  'services',
  'server',
  'logger',
  'lifecycle',
  'jobs',
  'schedules',
  'workers',
  'watch',
  'wsCluster',
]);
export const APP_ONLY_KEYS = new Set(['hosts', 'bridgeHub', 'asp', 'security', 'session', 'routesDir', 'channelsDir', 'lock', 'bus']);

export interface LoadedApp {
  name: string;
  dir: string;
  config: AppConfig;
  file: string | undefined;
}

export interface LoadedProject {
  dir: string;
  file: string;
  config: MegaConfig;
  apps: LoadedApp[];
}

export const CONFIG_NAMES = ['mega.config.ts', 'mega.config.mts', 'mega.config.js', 'mega.config.mjs'];
export const APP_CONFIG_NAMES = ['app.config.ts', 'app.config.mts', 'app.config.js', 'app.config.mjs'];

/** Walks up from `from` to the nearest directory holding a mega.config file. */
export function findProjectDir(from: string): string | undefined {
  let dir = resolve(from);
  for (;;) {
    if (CONFIG_NAMES.some((n) => existsSync(join(dir, n)))) return dir;
    const parent = resolve(dir, '..');
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** Loads `.env` (existing variables win, as with any 12-factor app). */
export function loadDotEnv(dir: string): void {
  const file = join(dir, '.env');
  if (!existsSync(file)) return;
  try {
    process.loadEnvFile(file);
  } catch (error) {
    throw new ConfigError('config.env_invalid', `cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
}

const jiti = createJiti(import.meta.url, { interopDefault: false });

/**
 * Imports a TS/JS module without a build step and returns its default export (undefined when it
 * has none); syntax errors become `code` (default `config.syntax`) with file and line.
 */
export async function importModule(file: string, code = 'config.syntax'): Promise<unknown> {
  try {
    const mod = (await jiti.import(file)) as { default?: unknown } | undefined;
    return mod?.default;
  } catch (error) {
    if (isMegaError(error)) throw error;
    const message = (error as Error)?.message ?? String(error);
    const at = /([^\s()]+):(\d+):(\d+)/.exec(message);
    const syntax = /ParseError|SyntaxError|Unexpected|Expected/.test(`${(error as Error)?.name} ${message}`);
    const line = at?.[2] ? Number(at[2]) : undefined;
    const where = line === undefined ? file : `${file}:${line}${at?.[3] ? `:${at[3]}` : ''}`;
    throw new ConfigError(
      syntax ? code : 'config.load_failed',
      `${syntax ? 'syntax error' : 'failed to load'} in ${where}: ${message.split('\n')[0]}`,
      {
        cause: error,
        details: { file, line, column: at?.[3] ? Number(at[3]) : undefined },
      },
    );
  }
}

function firstExisting(dir: string, names: string[]): string | undefined {
  for (const n of names) if (existsSync(join(dir, n))) return join(dir, n);
  return undefined;
}

async function loadObject(file: string): Promise<Record<string, unknown>> {
  const value = await importModule(file);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const got = value === undefined ? 'missing' : Array.isArray(value) ? 'an array' : typeof value;
    throw new ConfigError('config.invalid', `${file} must export default an object (use defineConfig({...})); default export is ${got}`, {
      details: { file, errors: [{ path: '/', message: `default export is ${got}` }] },
    });
  }
  return value as Record<string, unknown>;
}

/** One Ajv instance for the kernel (each instance costs ~30 ms of cold start to set up). */
export const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true });
const validateGlobal = ajv.compile({
  type: 'object',
  properties: {
    apps: { type: 'array', items: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' } },
    plugins: {
      type: 'array',
      items: {
        anyOf: [
          { type: 'string', minLength: 1 },
          { type: 'object', required: ['name', 'setup'] },
        ],
      },
    },
    services: {
      type: 'object',
      additionalProperties: false,
      properties: Object.fromEntries(
        ['dbs', 'caches', 'buses'].map((k) => [
          k,
          {
            type: 'object',
            additionalProperties: {
              type: 'object',
              required: ['driver'],
              properties: { driver: { type: 'string' }, url: { type: 'string' } },
            },
          },
        ]),
      ),
    },
    server: {
      type: 'object',
      properties: {
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        host: { type: 'string' },
        trustProxy: { type: 'boolean' },
        bodyLimit: { type: 'integer', minimum: 1 },
      },
    },
    logger: {
      type: 'object',
      properties: { level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }, pretty: { type: 'boolean' } },
    },
    lifecycle: {
      type: 'object',
      properties: { bootTimeoutMs: { type: 'integer', minimum: 1 }, shutdownTimeoutMs: { type: 'integer', minimum: 1 } },
    },
  },
});
const validateApp = ajv.compile({
  type: 'object',
  properties: {
    hosts: { type: 'array', items: { type: 'string', minLength: 1 } },
    routesDir: { type: 'string' },
    channelsDir: { type: 'string' },
  },
});

/** Turns ajv errors into `{ path, message }` pairs, prefixed with the config key they sit under. */
export function schemaErrors(errors: ErrorObject[] | null | undefined, prefix = ''): Array<{ path: string; message: string }> {
  return (errors ?? []).map((e) => ({
    path: `${prefix}${e.instancePath || ''}` || '/',
    message: `${e.message ?? 'is invalid'}${e.params && 'allowedValues' in e.params ? ` (${(e.params.allowedValues as unknown[]).join(', ')})` : ''}`,
  }));
}

export function invalidConfig(file: string, errors: Array<{ path: string; message: string }>): ConfigError {
  const list = errors.map((e) => `${e.path} ${e.message}`).join('; ');
  return new ConfigError('config.invalid', `invalid configuration in ${file}: ${list}`, { details: { file, errors } });
}

function checkScope(file: string, config: Record<string, unknown>, forbidden: Set<string>, belongs: string): void {
  for (const key of Object.keys(config)) {
    if (forbidden.has(key)) {
      throw new ConfigError('config.scope_violation', `"${key}" is not allowed in ${file}; it belongs in ${belongs}`, {
        details: { key, file, belongsIn: belongs },
      });
    }
  }
}

export interface ScopeRules {
  globalOnly: ReadonlySet<string>;
  appOnly: ReadonlySet<string>;
}

/** App name of a single-app project: its package.json name without scope, else the directory name. */
function appNameOf(dir: string): string {
  try {
    const name = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name;
    if (name) return name.replace(/^@[^/]+\//, '');
  } catch {
    // no package.json: fall back to the directory name
  }
  return basename(dir);
}

/**
 * Loads the global and app configs of the project in `dir`; `only` restricts the apps. A project is
 * either multi-app (`apps/<name>/app.config.ts`) or single-app (`app.config.ts` beside mega.config.ts).
 */
export async function loadProject(dir: string, options: { only?: string[]; scope?: ScopeRules } = {}): Promise<LoadedProject> {
  const file = firstExisting(dir, CONFIG_NAMES);
  if (!file) throw new ConfigError('config.not_found', `no mega.config.ts in ${dir} (run mega start from a Mega project)`);
  loadDotEnv(dir);
  const config = await loadObject(file);
  const scope = options.scope ?? { globalOnly: GLOBAL_ONLY_KEYS, appOnly: APP_ONLY_KEYS };
  const rel = (p: string) => relative(dir, p) || basename(p);
  checkScope(rel(file), config, scope.appOnly as Set<string>, 'apps/<name>/app.config.ts');
  if (!validateGlobal(config)) throw invalidConfig(rel(file), schemaErrors(validateGlobal.errors));
  const megaConfig = config as MegaConfig;

  // A single-app project keeps app.config.ts beside mega.config.ts; the project directory is the app.
  const single = firstExisting(dir, APP_CONFIG_NAMES);
  const appsDir = join(dir, 'apps');
  const appDirOf = (n: string) => (single ? dir : join(appsDir, n));
  const discovered = single
    ? [appNameOf(dir)]
    : existsSync(appsDir)
      ? readdirSync(appsDir)
          .filter((n) => statSync(join(appsDir, n)).isDirectory() && firstExisting(join(appsDir, n), APP_CONFIG_NAMES) !== undefined)
          .sort()
      : [];
  if (single && megaConfig.apps) {
    throw invalidConfig(rel(file), [{ path: '/apps', message: `must be absent: ${rel(single)} makes this a single-app project` }]);
  }
  let names = megaConfig.apps ?? discovered;
  for (const n of names) {
    if (!existsSync(appDirOf(n))) {
      throw new ConfigError('config.invalid', `${rel(file)}: apps lists "${n}" but apps/${n} does not exist`, {
        details: { file: rel(file), errors: [{ path: '/apps', message: `unknown app "${n}"` }] },
      });
    }
  }
  if (options.only?.length) {
    const unknown = options.only.filter((n) => !names.includes(n));
    if (unknown.length) {
      throw new ConfigError('app.not_found', `no app named ${unknown.join(', ')} in this project (known: ${names.join(', ') || 'none'})`);
    }
    names = names.filter((n) => options.only?.includes(n));
  }
  const apps: LoadedApp[] = [];
  for (const name of names) {
    const appDir = appDirOf(name);
    const appFile = firstExisting(appDir, APP_CONFIG_NAMES);
    const appConfig = appFile ? await loadObject(appFile) : {};
    if (appFile) {
      checkScope(rel(appFile), appConfig, scope.globalOnly as Set<string>, rel(file));
      if (!validateApp(appConfig)) throw invalidConfig(rel(appFile), schemaErrors(validateApp.errors));
    }
    apps.push({ name, dir: appDir, config: appConfig as AppConfig, file: appFile });
  }
  return { dir, file, config: megaConfig, apps };
}

export interface AppSecretSpec {
  /** The app config key that holds it, named in messages: `session.secret`. */
  configKey: string;
  /** The environment variable read when the app config has none. */
  envVar: string;
  /** The error code when production has none, or one is too short. */
  code: string;
  /** What it protects, for messages: `sessions`. */
  purpose: string;
  /** Fall back to the project-wide MEGA_SECRET too (default true). */
  shared?: boolean;
  minBytes?: number;
}

/**
 * A plugin's per-app signing or key secret: app config, then its env variable (then MEGA_SECRET).
 * Production without one fails boot; development gets a random one with a warning, because
 * nothing signed with it survives a restart.
 */
export function resolveAppSecret(
  kernel: { env: string; log: { warn(obj: object, msg: string): void } },
  appName: string,
  configured: string | undefined,
  spec: AppSecretSpec,
): string {
  const secret = configured ?? process.env[spec.envVar] ?? (spec.shared === false ? undefined : process.env.MEGA_SECRET);
  const where = `set ${spec.configKey} in apps/${appName}/app.config.ts or ${spec.envVar}`;
  if (secret !== undefined && Buffer.byteLength(secret) < (spec.minBytes ?? 1)) {
    throw new ConfigError(spec.code, `app ${appName}: the ${spec.purpose} secret must be at least ${spec.minBytes} bytes; ${where}`);
  }
  if (secret) return secret;
  if (kernel.env === 'production')
    throw new ConfigError(spec.code, `app ${appName}: ${spec.purpose} need a secret in production; ${where}`);
  kernel.log.warn({ app: appName }, `no ${spec.configKey} configured; using a random one (${spec.purpose} will not survive a restart)`);
  return randomBytes(32).toString('base64url');
}
