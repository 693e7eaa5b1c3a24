/**
 * Project files: `mega.config.ts` (global) + `apps/<name>/app.config.ts` (per app), loaded as
 * TypeScript without a build step (jiti, with its transform cache), `.env` first. Which keys may
 * appear where is not decided here: the kernel checks every key against the core schema and the
 * plugins' declared schemas before any plugin runs (kernel/src/schema.ts).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { createJiti } from 'jiti';
import { ConfigError, isMegaError } from './errors.js';
import type { LoggerConfig } from './logger.js';
import type { AnyPlugin } from './plugin.js';

export interface ServiceDeclaration {
  driver: string;
  url?: string;
  /** Boot continues (with a warning) when the service does not answer. */
  optional?: boolean;
  [option: string]: unknown;
}

/** Global configuration. Plugins add their keys by declaration merging. */
export interface MegaConfig {
  /** App names to run (directories under `apps/`); default: every directory there. */
  apps?: string[];
  /** Plugins by package name, or inline definitions. */
  plugins?: Array<string | AnyPlugin>;
  /** Connections by alias; each `driver` is served by a plugin that declares it. */
  services?: Record<string, Record<string, ServiceDeclaration>>;
  server?: { port?: number; host?: string; trustProxy?: boolean; bodyLimit?: number };
  logger?: LoggerConfig;
  /** Per-plugin boot timeout and per-step shutdown bound. */
  lifecycle?: { bootTimeoutMs?: number; shutdownTimeoutMs?: number };
}

/** Per-app configuration. Plugins add their keys by declaration merging. */
export interface AppConfig {
  /** Host names (vhost routing); none means the default app. */
  hosts?: string[];
}

export const defineConfig = <T extends MegaConfig>(config: T): T => config;
export const defineAppConfig = <T extends AppConfig>(config: T): T => config;

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
    const details = { file, line, column: at?.[3] ? Number(at[3]) : undefined };
    const what = `${syntax ? 'syntax error' : 'failed to load'} in ${where}: ${message.split('\n')[0]}`;
    throw new ConfigError(syntax ? code : 'config.load_failed', what, { cause: error, details });
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
export async function loadProject(dir: string, options: { only?: string[] } = {}): Promise<LoadedProject> {
  const file = firstExisting(dir, CONFIG_NAMES);
  if (!file) throw new ConfigError('config.not_found', `no mega.config.ts in ${dir} (run mega start from a Mega project)`);
  loadDotEnv(dir);
  const config = await loadObject(file);
  const rel = (p: string) => relative(dir, p) || basename(p);
  const megaConfig = config as MegaConfig;
  // `apps` decides which files to read, so its shape is checked here; every other key at boot.
  if (
    megaConfig.apps !== undefined &&
    !(Array.isArray(megaConfig.apps) && megaConfig.apps.every((a) => /^[a-z0-9][a-z0-9_-]*$/.test(String(a))))
  ) {
    throw invalidConfig(rel(file), [{ path: '/apps', message: 'must be a list of app directory names' }]);
  }

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
    apps.push({ name, dir: appDir, config: appConfig as AppConfig, file: appFile });
  }
  return { dir, file, config: megaConfig, apps };
}

export function invalidConfig(file: string, errors: Array<{ path: string; message: string }>): ConfigError {
  const list = errors.map((e) => `${e.path} ${e.message}`).join('; ');
  return new ConfigError('config.invalid', `invalid configuration in ${file}: ${list}`, { details: { file, errors } });
}
