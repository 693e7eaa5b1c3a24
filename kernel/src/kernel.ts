/**
 * The kernel: owns config, the plugin list, the app registry, the service registry, ctx
 * contributions and the lifecycle (validate -> setup -> boot -> running -> shutdown). It knows no
 * plugin by name; plugins reach it through the `PluginApi` bound to each of them.
 */

import { randomUUID } from 'node:crypto';
import { type Codec, loadCodec } from '@mega/codec';
import type { App, AppBase } from './apps.js';
import { registerApp, unregisterApp } from './apps.js';
import type { AppConfig, LoadedApp, MegaConfig, ServiceDeclaration } from './config.js';
import { loadProject } from './config.js';
import type { ContextInit, MegaContext } from './context.js';
import { ContextFactory } from './context.js';
import { MegaError, PluginError } from './errors.js';
import type { MegaHooks } from './hooks.js';
import { createHooks, tapHook, wrapPluginError } from './hooks.js';
import type { Logger } from './logger.js';
import { createLogger } from './logger.js';
import type { AnyPlugin, HealthCheck, PluginApi } from './plugin.js';
import { checkKernelRange, importPlugin, isPluginDefinition, orderPlugins, packageVersion } from './plugin.js';
import { validateConfig } from './schema.js';

export const KERNEL_VERSION: string = packageVersion(new URL('../package.json', import.meta.url));

/** Services plugins provide to each other (`api.provide('http', server)`). Extend by declaration merging. */
// biome-ignore lint/suspicious/noEmptyInterface: extended by plugins through declaration merging
export interface MegaServices {}

export type KernelState = 'created' | 'setup' | 'booting' | 'running' | 'stopping' | 'stopped';

export interface KernelOptions {
  /** Project directory (for plugin resolution and app files). */
  dir: string;
  config: MegaConfig;
  apps: LoadedApp[];
  /** Already-resolved plugin definitions, in any order. */
  plugins: readonly AnyPlugin[];
  /** Files the config came from, for error messages. */
  configFile?: string;
  env?: string;
  port?: number;
  logger?: Logger;
  /** False for processes that serve no traffic (`mega worker`, `mega scheduler`): servers skip listening. */
  serve?: boolean;
}

export interface HealthEntry {
  readonly name: string;
  readonly plugin: string;
  readonly check: HealthCheck;
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
  readonly plugins: readonly AnyPlugin[];
  readonly apps: readonly App[];
  /** Resolved listen options (CLI flag > PORT env > config > 3000). */
  readonly server: { port: number; host: string };
  readonly instanceId = randomUUID();
  /** Whether this process serves traffic; plugins that listen skip it when false. */
  readonly serving: boolean;
  #state: KernelState = 'created';
  #services = new Map<string, { value: unknown; plugin: string }>();
  #ctx = new ContextFactory();
  #health: HealthEntry[] = [];
  #problems: Error[] = [];
  #stopping: Promise<void> | undefined;
  #order: Map<string, number>;
  #codec: Codec | undefined;
  #loaded: readonly LoadedApp[];

  constructor(options: KernelOptions) {
    this.dir = options.dir;
    this.serving = options.serve ?? true;
    this.env = options.env ?? process.env.NODE_ENV ?? 'development';
    this.config = options.config;
    this.configFile = options.configFile ?? 'mega.config.ts';
    this.log = options.logger ?? createLogger(options.config.logger, this.env);
    this.plugins = orderPlugins(options.plugins, this.#problems);
    this.#order = new Map(this.plugins.map((p, i) => [p.name, i + 1]));
    const envPort = process.env.PORT ?? process.env.MEGA_PORT;
    this.server = {
      port: options.port ?? (envPort ? Number(envPort) : undefined) ?? options.config.server?.port ?? 3000,
      host: options.config.server?.host ?? process.env.HOST ?? '0.0.0.0',
    };
    const lifecycle = options.config.lifecycle ?? {};
    const byName = new Map(this.plugins.map((p) => [p.name, p]));
    this.hooks = createHooks({
      orderOf: (name) => this.#order.get(name),
      bootTimeoutMs: (name) => byName.get(name)?.bootTimeoutMs ?? lifecycle.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS,
      shutdownTimeoutMs: lifecycle.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
      frozen: () => this.#state === 'running',
      onShutdownError: (plugin, error) => this.log.error({ err: error, plugin }, `shutdown step of ${plugin} failed`),
    });
    this.#loaded = options.apps;
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

  use<K extends keyof MegaServices & string>(name: K): MegaServices[K];
  use<T>(name: string): T;
  use(name: string): unknown {
    const entry = this.#services.get(name);
    if (!entry) {
      const provided = [...this.#services.keys()];
      throw new MegaError('service.missing', `no plugin provides service "${name}" (provided: ${provided.join(', ') || 'none'})`, {
        details: { name, provided },
      });
    }
    return entry.value;
  }

  has(name: string): boolean {
    return this.#services.has(name);
  }

  /** Readiness checks registered with `api.health`, in registration order. */
  healthChecks(): readonly HealthEntry[] {
    return this.#health;
  }

  createContext(app: App, init: Partial<ContextInit> = {}): MegaContext {
    return this.#ctx.create(app, { id: init.id ?? randomUUID(), source: init.source });
  }

  /**
   * validate (kernel range, dependencies, every config key of every plugin and app, drivers,
   * secrets: all problems reported together) -> setup (dependency order) -> boot hook -> running.
   * On a boot failure, already-booted plugins are shut down.
   */
  async start(): Promise<void> {
    if (this.#state !== 'created') throw new MegaError('kernel.state', `kernel cannot start from state ${this.#state}`);
    const problems: Error[] = [...this.#problems];
    for (const plugin of this.plugins) {
      const range = checkKernelRange(plugin, this.version);
      if (range) problems.push(range);
    }
    const validated = validateConfig({
      dir: this.dir,
      plugins: this.plugins,
      config: this.config,
      apps: this.#loaded,
      configFile: this.configFile,
      env: this.env,
      log: this.log,
    });
    problems.push(...validated.problems);
    if (problems.length) throw combine(problems);

    this.#state = 'setup';
    try {
      for (const plugin of this.plugins) {
        const api = this.#api(plugin, (app) => validated.apps.get(typeof app === 'string' ? app : app.name)?.get(plugin.name) ?? {});
        try {
          await plugin.setup(api as PluginApi<never>, (validated.global.get(plugin.name) ?? {}) as never);
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

  /** The API handed to one plugin's setup: everything it registers is attributed to it. */
  #api(plugin: AnyPlugin, appConfig: (app: App | string) => Record<string, unknown>): PluginApi {
    const name = plugin.name;
    const services = this.#services;
    const drivers = plugin.drivers ?? {};
    return Object.freeze({
      name,
      kernel: this,
      log: this.log.child({ plugin: name }),
      tap: (hook, fn, options) => tapHook(this.hooks, name, hook, fn, options),
      onShutdown: (fn) => tapHook(this.hooks, name, 'shutdown', fn),
      provide: (service: string, value: unknown) => {
        const existing = services.get(service);
        if (existing) {
          throw new MegaError('service.duplicate', `[${name}] service "${service}" is already provided by ${existing.plugin}`, {
            details: { name: service, by: existing.plugin },
          });
        }
        services.set(service, { value, plugin: name });
      },
      use: (service: string) => this.use(service),
      has: (service) => this.has(service),
      contributeCtx: (member: string, factory: (ctx: MegaContext) => unknown) => this.#ctx.contribute(member, factory, name),
      contributeApp: (member, factory) => this.#contributeApp(member, factory),
      appConfig,
      services: (kind) =>
        Object.entries((this.config.services?.[kind] ?? {}) as Record<string, ServiceDeclaration>).filter(([, d]) =>
          (drivers[kind] ?? []).includes(d.driver),
        ),
      health: (check, fn) => void this.#health.push({ name: check, plugin: name, check: fn }),
    } satisfies PluginApi);
  }

  #contributeApp(name: string, factory: (app: App) => unknown): void {
    for (const app of this.apps) {
      let made: { value: unknown } | undefined;
      const get = () => {
        made ??= { value: factory(app) };
        return made.value;
      };
      Object.defineProperty(app, name, { enumerable: true, get });
    }
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

/** One error for every problem found before setup: the first one's code, every message listed. */
function combine(problems: Error[]): Error {
  if (problems.length === 1) return problems[0] as Error;
  const all = problems as MegaError[];
  const message = `${all.length} problems stop boot:\n${all.map((p) => `  - [${p.code ?? 'error'}] ${p.message}`).join('\n')}`;
  const details = { problems: all.map((p) => ({ code: p.code, message: p.message, details: p.details })) };
  return new PluginError(all[0]?.code ?? 'config.invalid', message, { cause: all[0], details });
}

export interface LoadKernelOptions {
  dir: string;
  /** Only these apps (default: all of the project's). */
  only?: string[];
  port?: number;
  env?: string;
  logger?: Logger;
  serve?: boolean;
}

/** Imports the plugins a project lists (package names or inline definitions), in listed order. */
export async function loadPlugins(config: MegaConfig, dir: string, file: string): Promise<AnyPlugin[]> {
  const plugins: AnyPlugin[] = [];
  for (const entry of config.plugins ?? []) {
    if (typeof entry === 'string') plugins.push(await importPlugin(entry, dir));
    else if (isPluginDefinition(entry)) plugins.push(entry);
    else throw new PluginError('plugin.invalid', `an inline plugin in ${file} was not made with definePlugin({...})`);
  }
  return plugins;
}

/** Loads `mega.config.ts`, the app configs and every listed plugin, and builds a kernel (not started). */
export async function loadKernel(options: LoadKernelOptions): Promise<Kernel> {
  const project = await loadProject(options.dir, options.only ? { only: options.only } : {});
  return new Kernel({
    dir: project.dir,
    config: project.config,
    apps: project.apps,
    plugins: await loadPlugins(project.config, project.dir, project.file),
    configFile: 'mega.config.ts',
    ...(options.env ? { env: options.env } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.serve === false ? { serve: false } : {}),
  });
}
