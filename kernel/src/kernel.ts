/**
 * The kernel: owns config, the plugin list, the app registry, the service registry, ctx
 * contributions and the lifecycle (setup -> boot -> running -> shutdown). Everything else is a plugin.
 */

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { App, AppBase } from './apps.js';
import { registerApp, unregisterApp } from './apps.js';
import { loadCodec } from './codec/index.js';
import type { Codec } from './codec/types.js';
import type { AppConfig, LoadedApp, MegaConfig } from './config.js';
import { APP_ONLY_KEYS, GLOBAL_ONLY_KEYS, loadProject } from './config.js';
import type { ContextInit, MegaContext } from './context.js';
import { ContextFactory } from './context.js';
import { ConfigError, MegaError, PluginError } from './errors.js';
import type { MegaHooks } from './hooks.js';
import { createHooks, wrapPluginError } from './hooks.js';
import type { Logger } from './logger.js';
import { createLogger } from './logger.js';
import type { PluginDefinition } from './plugin.js';
import { checkKernelRange, importPlugin, isPluginDefinition, orderPlugins, validatePluginConfig } from './plugin.js';

export const KERNEL_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

/** Services plugins provide to each other (`kernel.provide('http', server)`). Extend by declaration merging. */
// biome-ignore lint/suspicious/noEmptyInterface: extended by plugins through declaration merging
export interface MegaServices {}

export type KernelState = 'created' | 'setup' | 'booting' | 'running' | 'stopping' | 'stopped';

export interface KernelOptions {
  /** Project directory (for plugin resolution and app files). */
  dir: string;
  config: MegaConfig;
  apps: LoadedApp[];
  /** Already-resolved plugin definitions, in any order. */
  plugins: PluginDefinition[];
  /** Files the config came from, for error messages. */
  configFile?: string;
  env?: string;
  port?: number;
  logger?: Logger;
}

const DEFAULT_BOOT_TIMEOUT_MS = 10_000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

export class Kernel {
  readonly version = KERNEL_VERSION;
  readonly hooks: MegaHooks;
  readonly log: Logger;
  readonly dir: string;
  readonly env: string;
  readonly config: Readonly<MegaConfig>;
  readonly configFile: string;
  /** Plugins in dependency order. */
  readonly plugins: readonly PluginDefinition[];
  readonly apps: readonly App[];
  /** Resolved listen options (CLI flag > PORT env > config > 3000). */
  readonly server: { port: number; host: string };
  readonly instanceId = randomUUID();
  #state: KernelState = 'created';
  #services = new Map<string, { value: unknown; plugin: string }>();
  #ctx = new ContextFactory();
  #appConfigs = new Map<string, Map<string, unknown>>();
  #stopping: Promise<void> | undefined;
  #order: Map<string, number>;
  #codec: Codec | undefined;

  constructor(options: KernelOptions) {
    this.dir = options.dir;
    this.env = options.env ?? process.env.NODE_ENV ?? 'development';
    this.config = options.config;
    this.configFile = options.configFile ?? 'mega.config.ts';
    this.log = options.logger ?? createLogger(options.config.logger, this.env);
    this.plugins = orderPlugins(options.plugins);
    this.#order = new Map(this.plugins.map((p, i) => [p.name, i + 1]));
    const envPort = process.env.PORT ?? process.env.MEGA_PORT;
    this.server = {
      port: options.port ?? (envPort ? Number(envPort) : undefined) ?? options.config.server?.port ?? 3000,
      host: options.config.server?.host ?? process.env.HOST ?? '0.0.0.0',
    };
    const lifecycle = options.config.lifecycle ?? {};
    const byName = new Map(this.plugins.map((p) => [p.name, p]));
    this.hooks = createHooks({
      orderOf: (name) => this.#order.get(name) ?? 0,
      bootTimeoutMs: (name) => byName.get(name)?.bootTimeoutMs ?? lifecycle.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS,
      shutdownTimeoutMs: lifecycle.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
      frozen: () => this.#state === 'running',
      onShutdownError: (plugin, error) => this.log.error({ err: error, plugin }, `shutdown step of ${plugin} failed`),
    });
    this.apps = options.apps.map((a) => this.#makeApp(a));
  }

  /** The codec (native addon or TS fallback, per MEGA_CODEC), loaded on first use. */
  get codec(): Codec {
    this.#codec ??= loadCodec({ log: this.log });
    return this.#codec;
  }

  get state(): KernelState {
    return this.#state;
  }

  /** False before boot completes and as soon as shutdown begins (readiness probes use it). */
  get ready(): boolean {
    return this.#state === 'running';
  }

  provide<K extends keyof MegaServices & string>(name: K, value: MegaServices[K], plugin?: string): void;
  provide(name: string, value: unknown, plugin?: string): void;
  provide(name: string, value: unknown, plugin = 'unknown'): void {
    const existing = this.#services.get(name);
    if (existing) {
      throw new MegaError('service.duplicate', `service "${name}" is already provided by ${existing.plugin}`, {
        details: { name, by: existing.plugin },
      });
    }
    this.#services.set(name, { value, plugin });
  }

  use<K extends keyof MegaServices & string>(name: K): MegaServices[K];
  use<T>(name: string): T;
  use(name: string): unknown {
    const entry = this.#services.get(name);
    if (!entry) {
      throw new MegaError(
        'service.missing',
        `no plugin provides service "${name}" (provided: ${[...this.#services.keys()].join(', ') || 'none'})`,
        {
          details: { name, provided: [...this.#services.keys()] },
        },
      );
    }
    return entry.value;
  }

  has(name: string): boolean {
    return this.#services.has(name);
  }

  /** Adds a lazy member to every ctx (`ctx.<name>`), computed on first access per ctx. */
  contributeCtx<K extends keyof MegaContext & string>(name: K, factory: (ctx: MegaContext) => MegaContext[K], plugin?: string): void;
  contributeCtx(name: string, factory: (ctx: MegaContext) => unknown, plugin?: string): void;
  contributeCtx(name: string, factory: (ctx: MegaContext) => unknown, plugin?: string): void {
    this.#ctx.contribute(name, factory, plugin);
  }

  createContext(app: App, init: Partial<ContextInit> = {}): MegaContext {
    return this.#ctx.create(app, { id: init.id ?? randomUUID(), source: init.source });
  }

  /** Adds a lazy member to every app (`getApp('admin').bus`). */
  contributeApp(name: string, factory: (app: App) => unknown): void {
    for (const app of this.apps) {
      let value: unknown;
      let made = false;
      Object.defineProperty(app, name, {
        enumerable: true,
        configurable: false,
        get: () => {
          if (!made) {
            value = factory(app);
            made = true;
          }
          return value;
        },
      });
    }
  }

  /** An app-scoped plugin's validated config for one app (defaults applied). */
  appConfig<T>(app: App | string, key: string): T {
    const name = typeof app === 'string' ? app : app.name;
    return this.#appConfigs.get(name)?.get(key) as T;
  }

  /** setup (dependency order) -> boot hook -> running. On failure, already-booted plugins are shut down. */
  async start(): Promise<void> {
    if (this.#state !== 'created') throw new MegaError('kernel.state', `kernel cannot start from state ${this.#state}`);
    this.#state = 'setup';
    try {
      for (const plugin of this.plugins) {
        checkKernelRange(plugin, this.version);
        const config = this.#pluginConfig(plugin);
        try {
          await plugin.setup(this, config as never);
        } catch (error) {
          throw wrapPluginError(error, plugin.name, 'setup');
        }
      }
      for (const app of this.apps) registerApp(app);
      this.#state = 'booting';
      await this.hooks.boot.promise(this);
      for (const app of this.apps) app.state = 'ready';
      this.#state = 'running';
    } catch (error) {
      await this.stop('boot failed').catch(() => undefined);
      throw error;
    }
  }

  /** Runs the shutdown hook once (reverse dependency order, each step bounded); later calls share it. */
  stop(reason = 'stop', signal?: NodeJS.Signals): Promise<void> {
    this.#stopping ??= (async () => {
      this.#state = 'stopping';
      await this.hooks.shutdown.promise(signal ? { reason, signal } : { reason });
      for (const app of this.apps) {
        app.state = 'stopped';
        unregisterApp(app);
      }
      this.#state = 'stopped';
    })();
    return this.#stopping;
  }

  #pluginConfig(plugin: PluginDefinition): unknown {
    const key = plugin.configKey;
    if (!key) return undefined;
    const global = this.config as Record<string, unknown>;
    if ((plugin.configScope ?? 'global') === 'global') {
      for (const app of this.apps) {
        if (key in app.config) {
          throw new ConfigError(
            'config.scope_violation',
            `"${key}" (${plugin.name}) is not allowed in apps/${app.name}/app.config.ts; it belongs in ${this.configFile}`,
            {
              details: { key, file: `apps/${app.name}/app.config.ts`, belongsIn: this.configFile },
            },
          );
        }
      }
      return validatePluginConfig(plugin, global[key], this.configFile);
    }
    if (key in global) {
      throw new ConfigError(
        'config.scope_violation',
        `"${key}" (${plugin.name}) is not allowed in ${this.configFile}; it belongs in apps/<name>/app.config.ts`,
        {
          details: { key, file: this.configFile, belongsIn: 'apps/<name>/app.config.ts' },
        },
      );
    }
    for (const app of this.apps) {
      const value = validatePluginConfig(plugin, (app.config as Record<string, unknown>)[key], `apps/${app.name}/app.config.ts`);
      const map = this.#appConfigs.get(app.name) ?? new Map<string, unknown>();
      this.#appConfigs.set(app.name, map);
      map.set(key, value);
    }
    return undefined;
  }

  #makeApp(loaded: LoadedApp): App {
    const config: AppConfig = loaded.config;
    const app: AppBase = {
      name: loaded.name,
      dir: loaded.dir,
      config,
      hosts: (config.hosts ?? []).map((h) => h.toLowerCase()),
      log: this.log.child({ app: loaded.name }),
      state: 'registered',
    };
    return app as App;
  }
}

export interface LoadKernelOptions {
  dir: string;
  /** Only these apps (default: all of the project's). */
  only?: string[];
  port?: number;
  env?: string;
  logger?: Logger;
}

/** Loads `mega.config.ts`, the app configs and every listed plugin, and builds a kernel (not started). */
export async function loadKernel(options: LoadKernelOptions): Promise<Kernel> {
  const project = await loadProject(options.dir, {
    ...(options.only ? { only: options.only } : {}),
    scope: { globalOnly: GLOBAL_ONLY_KEYS, appOnly: APP_ONLY_KEYS },
  });
  const plugins: PluginDefinition[] = [];
  for (const entry of project.config.plugins ?? []) {
    if (typeof entry === 'string') plugins.push(await importPlugin(entry, project.dir));
    else if (isPluginDefinition(entry)) plugins.push(entry as PluginDefinition);
    else throw new PluginError('plugin.invalid', `an inline plugin in ${project.file} was not made with definePlugin({...})`);
  }
  return new Kernel({
    dir: project.dir,
    config: project.config,
    apps: project.apps,
    plugins,
    configFile: 'mega.config.ts',
    ...(options.env ? { env: options.env } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
}
