/**
 * The plugin contract. A plugin is a frozen, branded plain object made by `definePlugin`: metadata
 * and declarations the kernel checks before anything runs (kernel range, dependencies, config
 * schemas, drivers), and a `setup(api, config)` that receives an API already bound to the plugin.
 * Dependencies are resolved at load time (listed order does not matter) by a DFS that names cycles.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Static, TObject, TSchema } from '@sinclair/typebox';
import satisfies from 'semver/functions/satisfies.js';
import type { App } from './apps.js';
import { importModule, type ServiceDeclaration } from './config.js';
import type { ContextContribution, MegaContext } from './context.js';
import { PluginError } from './errors.js';
import type { HookFns, HookName, ShutdownContext, TapOptions } from './hooks.js';
import type { Kernel, MegaServices } from './kernel.js';
import type { Logger } from './logger.js';

/** What `configure(project)` (run by `mega plugin add`) and generators may do to a project. */
export interface ProjectEditor {
  readonly dir: string;
  /** Adds `key: value` to mega.config.ts (or an app config) unless present; keeps formatting. */
  setConfigDefault(key: string, value: unknown, app?: string): Promise<boolean>;
  /** Appends `KEY=value` to `.env` unless the key is there. */
  addEnv(key: string, value: string, comment?: string): Promise<boolean>;
  /** Writes a file unless it exists (scaffolding). */
  writeFileIfMissing(path: string, content: string): Promise<boolean>;
  log(message: string): void;
}

/** A readiness check: resolves when the dependency answers, rejects (with a MegaError) when not. */
export type HealthCheck = () => Promise<void>;

/** Terminal I/O handed to CLI commands. */
export interface CliIO {
  cwd: string;
  stdout(line: string): void;
  stderr(line: string): void;
}

/** A `mega <name>` subcommand contributed by a plugin; `run` resolves to the exit code. */
export interface CliCommand {
  summary: string;
  run(argv: string[], io: CliIO): Promise<number>;
}

/** A `mega generate <kind> <name>` kind contributed by a plugin. */
export interface Generator {
  summary: string;
  run(name: string, project: ProjectEditor, options: Record<string, string | boolean>): Promise<void>;
}

/** The minimum of a node:cluster worker a primary handler needs. */
export interface PrimaryWorker {
  readonly id: number;
  isConnected(): boolean;
  send(message: unknown): boolean;
}

/**
 * The cluster-primary half of a plugin (`mega start --workers N`): messages whose `type` equals
 * `channel` are handed to `handle`; `exited` runs when a worker dies.
 */
export interface PrimaryHandler {
  readonly channel: string;
  handle(worker: PrimaryWorker, message: unknown): void;
  exited?(worker: PrimaryWorker): void;
}

/** A plugin's config declaration: the top-level keys it owns in each file, as TypeBox objects. */
export interface PluginConfigSchemas<G extends TObject, A extends TObject> {
  /** Keys of mega.config.ts; their validated value (defaults applied) is `setup`'s `config`. */
  global?: G;
  /** Keys of each app.config.ts; read one app's validated value with `api.appConfig(app)`. */
  app?: A;
}

/** The API a plugin's `setup` receives, bound to that plugin: nothing it does names itself. */
export interface PluginApi<A = Record<string, unknown>> {
  /** This plugin's name. */
  readonly name: string;
  /** The kernel: apps, env, dir, config, server, codec, state; `hooks` for call sites this plugin owns. */
  readonly kernel: Kernel;
  /** Child logger with `{ plugin: name }`. */
  readonly log: Logger;
  /** Taps a kernel hook under this plugin's name (errors are attributed; boot bounded; shutdown ordered). */
  tap<H extends HookName>(hook: H, fn: HookFns[H], options?: TapOptions): void;
  /** A shutdown step (the `shutdown` hook, reverse dependency order). */
  onShutdown(fn: (context: ShutdownContext) => void | Promise<void>): void;
  /** Publishes a service to other plugins (`service.duplicate` if taken). Type it by merging into `MegaServices`. */
  provide<K extends keyof MegaServices & string>(name: K, value: MegaServices[K]): void;
  provide(name: string, value: unknown): void;
  use<K extends keyof MegaServices & string>(name: K): MegaServices[K];
  use<T>(name: string): T;
  has(name: string): boolean;
  /** A lazy `ctx.<name>`, built on first access per request or connection. */
  contributeCtx<K extends keyof MegaContext & string>(name: K, factory: ContextContribution<MegaContext[K]>): void;
  contributeCtx(name: string, factory: ContextContribution): void;
  /** A lazy `getApp(name).<name>`. */
  contributeApp(name: string, factory: (app: App) => unknown): void;
  /** One app's validated value of this plugin's app-scoped keys (defaults applied). */
  appConfig(app: App | string): A;
  /** `services.<kind>` entries whose driver this plugin declared in `drivers`. */
  services(kind: string): Array<[alias: string, declaration: ServiceDeclaration]>;
  /** A readiness check reported by `/ready` (`@mega/health`) under `name`. */
  health(name: string, check: HealthCheck): void;
}

export interface PluginDefinition<G extends TObject = TObject, A extends TObject = TObject> {
  /** Package name, e.g. `@mega/http`; every tap, service and log line of the plugin carries it. */
  readonly name: string;
  readonly version: string;
  /** Semver range of kernels this plugin supports. */
  readonly kernel?: string;
  /** Plugins that must be loaded (and set up) before this one. */
  readonly dependsOn?: readonly string[];
  /** Plugins set up before this one when they are loaded, without requiring them (e.g. an optional Redis owner). */
  readonly after?: readonly string[];
  readonly config?: PluginConfigSchemas<G, A>;
  /** `services.<kind>.<alias>.driver` values this plugin serves, e.g. `{ dbs: ['postgres'] }`. */
  readonly drivers?: Readonly<Record<string, readonly string[]>>;
  /** `mega <name>` subcommands. */
  readonly commands?: Readonly<Record<string, CliCommand>>;
  /** `mega generate <kind>` kinds. */
  readonly generators?: Readonly<Record<string, Generator>>;
  /** The cluster primary's half of this plugin. */
  readonly primary?: () => PrimaryHandler;
  /** Boot timeout for this plugin's boot taps (ms); default `lifecycle.bootTimeoutMs` (10 s). */
  readonly bootTimeoutMs?: number;
  setup(api: PluginApi<Static<A>>, config: Static<G>): void | Promise<void>;
  configure?(project: ProjectEditor): void | Promise<void>;
}

/** What a user may write for a config schema: keys with defaults (and nested ones) may be left out. */
export type ConfigInput<S extends TSchema> = DeepPartial<Static<S>>;
type DeepPartial<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends readonly unknown[]
    ? T
    : T extends object
      ? { [K in keyof T]?: DeepPartial<T[K]> }
      : T;

/** A definition of any config shape, for lists of plugins. */
export type AnyPlugin = PluginDefinition<TObject, TObject>;

const PLUGIN_BRAND = Symbol.for('mega.plugin');

/** The version in the package.json at `url`: `packageVersion(new URL('../package.json', import.meta.url))`. */
export function packageVersion(url: URL): string {
  return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
}

export function definePlugin<G extends TObject = TObject, A extends TObject = TObject>(
  definition: PluginDefinition<G, A>,
): PluginDefinition<G, A> {
  if (typeof definition?.name !== 'string' || !definition.name) {
    throw new PluginError('plugin.invalid', 'definePlugin needs a non-empty name');
  }
  if (typeof definition.setup !== 'function') {
    throw new PluginError('plugin.invalid', `[${definition.name}] definePlugin needs a setup(api, config) function`, {
      plugin: definition.name,
    });
  }
  Object.defineProperty(definition, PLUGIN_BRAND, { value: true });
  return Object.freeze(definition);
}

export function isPluginDefinition(value: unknown): value is AnyPlugin {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[PLUGIN_BRAND] === true;
}

/** Imports a plugin package from the project directory (so the project's node_modules win). */
export async function importPlugin(name: string, projectDir: string): Promise<AnyPlugin> {
  let resolved: string;
  try {
    resolved = createRequire(join(projectDir, 'package.json')).resolve(name);
  } catch (error) {
    throw new PluginError('plugin.not_installed', `plugin "${name}" is not installed in ${projectDir}; run: mega plugin add ${name}`, {
      plugin: name,
      cause: error,
    });
  }
  // Local plugin files may be TypeScript; packages are built JS and load natively.
  const local = name.startsWith('.') || name.startsWith('/');
  const mod = (local ? { default: await importModule(resolved, 'plugin.syntax') } : await import(pathToFileURL(resolved).href)) as {
    default?: unknown;
    plugin?: unknown;
  };
  const def = mod.default ?? mod.plugin;
  if (!isPluginDefinition(def)) {
    throw new PluginError('plugin.invalid', `"${name}" does not default-export a definePlugin({...}) result`, { plugin: name });
  }
  return def;
}

/**
 * Orders plugins so every dependency comes before its dependents (DFS, listed order kept
 * otherwise). Problems (`plugin.duplicate`, `plugin.missing_dependency`, `plugin.cycle` with the
 * cycle path) are collected, not thrown, so boot can report them with every other problem.
 */
export function orderPlugins(plugins: readonly AnyPlugin[], problems: Error[] = []): AnyPlugin[] {
  const byName = new Map<string, AnyPlugin>();
  for (const p of plugins) {
    if (byName.has(p.name)) problems.push(new PluginError('plugin.duplicate', `plugin "${p.name}" is listed twice`, { plugin: p.name }));
    else byName.set(p.name, p);
  }
  const done = new Set<string>();
  const path: string[] = [];
  const ordered: AnyPlugin[] = [];
  const visit = (p: AnyPlugin): void => {
    if (done.has(p.name)) return;
    const at = path.indexOf(p.name);
    if (at !== -1) {
      const cycle = [...path.slice(at), p.name];
      problems.push(
        new PluginError('plugin.cycle', `plugin dependency cycle: ${cycle.join(' -> ')}`, { plugin: p.name, details: { cycle } }),
      );
      return;
    }
    path.push(p.name);
    for (const dep of p.after ?? []) {
      const target = byName.get(dep);
      if (target) visit(target);
    }
    for (const dep of p.dependsOn ?? []) {
      const target = byName.get(dep);
      if (target) visit(target);
      else {
        const message = `plugin "${p.name}" depends on "${dep}", which is not in plugins; run: mega plugin add ${dep}`;
        problems.push(new PluginError('plugin.missing_dependency', message, { plugin: p.name, details: { plugin: p.name, missing: dep } }));
      }
    }
    path.pop();
    done.add(p.name);
    ordered.push(p);
  };
  for (const p of byName.values()) visit(p);
  return ordered;
}

export function checkKernelRange(plugin: AnyPlugin, kernelVersion: string): PluginError | undefined {
  if (plugin.kernel && !satisfies(kernelVersion, plugin.kernel, { includePrerelease: true })) {
    return new PluginError('plugin.kernel_range', `plugin "${plugin.name}" needs kernel ${plugin.kernel}, this is ${kernelVersion}`, {
      plugin: plugin.name,
      details: { required: plugin.kernel, actual: kernelVersion },
    });
  }
  return undefined;
}
