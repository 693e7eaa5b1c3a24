/**
 * The plugin contract and loader. A plugin is a plain object made by `definePlugin` (no base
 * class): metadata the loader checks before anything runs, and a `setup` that taps hooks.
 * Dependencies are resolved at load time (registration order does not matter) by a DFS that
 * rejects cycles and missing plugins with coded errors.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ValidateFunction } from 'ajv';
import semver from 'semver';
import { ajv, importModule, invalidConfig, schemaErrors } from './config.js';
import { PluginError } from './errors.js';
import type { Kernel } from './kernel.js';

/** What `configure(project)` may do when `mega plugin add` installs a plugin. */
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

export interface PluginDefinition<C = unknown> {
  /** Package name, e.g. `@mega/http`. Also the tap name of every tap this plugin makes. */
  readonly name: string;
  readonly version: string;
  /** Semver range of kernels this plugin supports. */
  readonly kernel?: string;
  /** Plugins that must be loaded (and set up) before this one. */
  readonly dependsOn?: readonly string[];
  /** Config key this plugin reads, and which file it lives in. */
  readonly configKey?: string;
  readonly configScope?: 'global' | 'app';
  /** JSON Schema of the value under `configKey`; defaults in it are applied. */
  readonly configSchema?: Record<string, unknown>;
  /** Boot timeout for this plugin's boot taps (ms); default from `lifecycle.bootTimeoutMs` (10 s). */
  readonly bootTimeoutMs?: number;
  setup(kernel: Kernel, config: C): void | Promise<void>;
  configure?(project: ProjectEditor): void | Promise<void>;
}

const PLUGIN_BRAND = Symbol.for('mega.plugin');

/** The version in the package.json at `url`: `packageVersion(new URL('../package.json', import.meta.url))`. */
export function packageVersion(url: URL): string {
  return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
}

export function definePlugin<C = unknown>(definition: PluginDefinition<C>): PluginDefinition<C> {
  if (typeof definition?.name !== 'string' || !definition.name) {
    throw new PluginError('plugin.invalid', 'definePlugin needs a non-empty name');
  }
  if (typeof definition.setup !== 'function') {
    throw new PluginError('plugin.invalid', `[${definition.name}] definePlugin needs a setup(kernel, config) function`, {
      plugin: definition.name,
    });
  }
  Object.defineProperty(definition, PLUGIN_BRAND, { value: true });
  return Object.freeze(definition);
}

export function isPluginDefinition(value: unknown): value is PluginDefinition {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[PLUGIN_BRAND] === true;
}

/** Imports a plugin package from the project directory (so the project's node_modules win). */
export async function importPlugin(name: string, projectDir: string): Promise<PluginDefinition> {
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
 * otherwise). Throws `plugin.missing_dependency`, `plugin.cycle` (with the cycle path) and
 * `plugin.duplicate`.
 */
export function orderPlugins(plugins: readonly PluginDefinition[]): PluginDefinition[] {
  const byName = new Map<string, PluginDefinition>();
  for (const p of plugins) {
    if (byName.has(p.name)) throw new PluginError('plugin.duplicate', `plugin "${p.name}" is listed twice`, { plugin: p.name });
    byName.set(p.name, p);
  }
  const done = new Set<string>();
  const path: string[] = [];
  const ordered: PluginDefinition[] = [];
  const visit = (p: PluginDefinition): void => {
    if (done.has(p.name)) return;
    const at = path.indexOf(p.name);
    if (at !== -1) {
      const cycle = [...path.slice(at), p.name];
      throw new PluginError('plugin.cycle', `plugin dependency cycle: ${cycle.join(' -> ')}`, { plugin: p.name, details: { cycle } });
    }
    path.push(p.name);
    for (const dep of p.dependsOn ?? []) {
      const target = byName.get(dep);
      if (!target) {
        throw new PluginError(
          'plugin.missing_dependency',
          `plugin "${p.name}" depends on "${dep}", which is not in plugins; run: mega plugin add ${dep}`,
          {
            plugin: p.name,
            details: { plugin: p.name, missing: dep },
          },
        );
      }
      visit(target);
    }
    path.pop();
    done.add(p.name);
    ordered.push(p);
  };
  for (const p of plugins) visit(p);
  return ordered;
}

export function checkKernelRange(plugin: PluginDefinition, kernelVersion: string): void {
  if (plugin.kernel && !semver.satisfies(kernelVersion, plugin.kernel, { includePrerelease: true })) {
    throw new PluginError('plugin.kernel_range', `plugin "${plugin.name}" needs kernel ${plugin.kernel}, this is ${kernelVersion}`, {
      plugin: plugin.name,
      details: { required: plugin.kernel, actual: kernelVersion },
    });
  }
}

const compiled = new WeakMap<object, ValidateFunction>();

/** Validates (and fills defaults into) a plugin's config value; every error with its path. */
export function validatePluginConfig(plugin: PluginDefinition, value: unknown, file: string): unknown {
  if (!plugin.configSchema || !plugin.configKey) return value;
  let validate = compiled.get(plugin.configSchema);
  if (!validate) {
    validate = ajv.compile(plugin.configSchema);
    compiled.set(plugin.configSchema, validate);
  }
  const data = value === undefined ? {} : structuredCloneSafe(value);
  if (!validate(data)) throw invalidConfig(file, schemaErrors(validate.errors, `/${plugin.configKey}`));
  return data;
}

/** Copies plain config data so defaults do not leak into the user's objects; functions are kept by reference. */
function structuredCloneSafe(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(structuredCloneSafe);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, structuredCloneSafe(v)]));
  }
  return value;
}
