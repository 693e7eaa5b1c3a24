/**
 * Kernels booted in the test's process: a project directory as `mega start` would load it, or a set
 * of plugins with inline config and apps. Logs are captured (silent on the terminal); `stopAll()`
 * stops every kernel and closes every client the kit opened.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AnyPlugin, AppConfig, Kernel, LoadedApp, Logger, MegaConfig } from '@mega/kernel';
import { Kernel as KernelClass, loadPlugins, loadProject } from '@mega/kernel';
import { type InjectInit, type InjectResponse, inject } from './http.js';
import { captureLogs, type LogCapture, type LogLevel, type LogLine, type LogMatcher } from './logs.js';
import type { Loose } from './loose.js';
import { WsClient, type WsOptions } from './ws.js';

export interface BootOptions {
  /** `kernel.env` (default `test`): `production` turns on production checks (secrets, hidden messages). */
  env?: string;
  /** Listen port (default 0: a free one; read it from `booted.port`). */
  port?: number;
  /** Listen host (default: the config's `server.host`, else 127.0.0.1). */
  host?: string;
  /** Lowest level captured in `booted.logs` (default `info`). */
  logLevel?: LogLevel;
  /** Your own logger instead of the capturing one (`booted.logs` then stays empty). */
  logger?: Logger;
  /** Inline plugins added to the project's list (a tracer, a fake adapter). */
  plugins?: readonly AnyPlugin[];
  /** Start the kernel (default true). With false, call `booted.kernel.start()` yourself (to assert a boot failure). */
  start?: boolean;
}

export interface BootProjectOptions extends BootOptions {
  /** Only these apps of the project (`mega start --app`). */
  apps?: string[];
}

export interface BootPluginsOptions extends BootOptions {
  /** The project's plugins, in any order (the kernel orders them by dependency). */
  plugins: readonly AnyPlugin[];
  /** mega.config.ts keys: the kernel's and the plugins' (`ws: {...}`, `session: {...}`). */
  config?: MegaConfig | (MegaConfig & Record<string, unknown>);
  /** Shorthand for `config.services`. */
  services?: MegaConfig['services'];
  /** App name -> app.config.ts keys. Default: one app named `app<random>` with no keys. */
  apps?: Record<string, AppConfig | (AppConfig & Record<string, unknown>)>;
  /** Project directory (default: a fresh temp dir); apps live in `<dir>/apps/<name>`. */
  dir?: string;
}

/** A booted (or built, with `start: false`) kernel and the tools to talk to it. */
export interface Booted {
  readonly kernel: Kernel;
  readonly dir: string;
  /** Captured log lines, oldest first. */
  readonly logs: LogLine[];
  /**
   * The port the server listens on: the `port` of the `http` service when a plugin provides one
   * (`@mega/http`), else the configured port. Throws when nothing listens.
   */
  readonly port: number;
  /** `http://127.0.0.1:<port><path>` (`ws://` with `protocol: 'ws'`). */
  url(path: string, protocol?: 'http' | 'ws'): string;
  /** A real HTTP request to the server. */
  inject<T = Loose>(path: string, init?: InjectInit): Promise<InjectResponse<T>>;
  /** Opens a WebSocket to `path`; rejects with `WsHandshakeError` when refused. Closed by `stopAll()`. */
  ws(path: string, options?: WsOptions): Promise<WsClient>;
  /** Log lines matching `match` (a predicate, or text / RegExp against `msg`). */
  findLogs(match: LogMatcher): LogLine[];
  /** The first line matching `match`, logged already or still to come. */
  waitForLog(match: LogMatcher, timeoutMs?: number): Promise<LogLine>;
  /** Stops the kernel (idempotent). */
  stop(): Promise<void>;
}

const kernels = new Set<Kernel>();
const clients = new Set<WsClient>();

/**
 * Stops every kernel the kit booted (in reverse boot order) after closing every WebSocket client
 * it opened. Call it from `afterEach` (or `afterAll`).
 */
export async function stopAll(): Promise<void> {
  const open = [...clients];
  clients.clear();
  for (const c of open) c.terminate();
  const all = [...kernels].reverse();
  kernels.clear();
  for (const k of all) await k.stop();
}

/** Opens a WebSocket client (closed by `stopAll()`); `url` is `ws://host:port/path`. */
export async function openWs(url: string, options?: WsOptions): Promise<WsClient> {
  const client = await WsClient.open(url, options);
  clients.add(client);
  void client.closed.then(() => clients.delete(client));
  return client;
}

function listenPort(kernel: Kernel): number {
  // The `http` service of @mega/http carries the bound port; read structurally so the kit needs no plugin.
  const http = kernel.has('http') ? kernel.use<{ port?: unknown }>('http') : undefined;
  if (typeof http?.port === 'number' && http.port > 0) return http.port;
  if (kernel.server.port > 0) return kernel.server.port;
  throw new Error('no listening server: inject and ws need a plugin that provides an `http` service with its port (e.g. @mega/http)');
}

/** Registers `kernel` for `stopAll()` and wraps it; does not start it. */
function wrap(kernel: Kernel, dir: string, capture: LogCapture): Booted {
  kernels.add(kernel);
  return {
    kernel,
    dir,
    logs: capture.lines,
    get port() {
      return listenPort(kernel);
    },
    url: (path, protocol = 'http') => `${protocol}://127.0.0.1:${listenPort(kernel)}${path}`,
    inject: async (path, init) => inject(listenPort(kernel), path, init),
    ws: async (path, options) => openWs(`ws://127.0.0.1:${listenPort(kernel)}${path}`, options),
    findLogs: capture.find,
    waitForLog: capture.waitFor,
    async stop() {
      kernels.delete(kernel);
      await kernel.stop();
    },
  };
}

async function started(booted: Booted, start = true): Promise<Booted> {
  if (start) await booted.kernel.start();
  return booted;
}

/**
 * Boots the project in `dir` (mega.config.ts, app configs, `.env`, the plugins it lists), as
 * `mega start` would, on a free loopback port unless told otherwise.
 */
export async function bootProject(dir: string, options: BootProjectOptions = {}): Promise<Booted> {
  const project = await loadProject(dir, options.apps ? { only: options.apps } : {});
  // Loopback unless the caller or the project says otherwise (a bad `host` must still reach validation).
  const host = options.host ?? project.config.server?.host ?? '127.0.0.1';
  const config: MegaConfig = { ...project.config, server: { ...project.config.server, host } };
  const plugins = [...(await loadPlugins(project.config, project.dir, project.file)), ...(options.plugins ?? [])];
  const capture = captureLogs(options.logLevel);
  const kernel = new KernelClass({
    dir: project.dir,
    config,
    apps: project.apps,
    plugins,
    configFile: 'mega.config.ts',
    env: options.env ?? 'test',
    port: options.port ?? 0,
    logger: options.logger ?? capture.logger,
  });
  return started(wrap(kernel, project.dir, capture), options.start);
}

/** Boots `plugins` with inline config, services and apps; no files needed (apps get empty directories). */
export function bootPlugins(options: BootPluginsOptions): Promise<Booted> {
  return started(buildPlugins(options), options.start);
}

/** {@link bootPlugins} without starting, synchronously: for `await expect(b.kernel.start()).rejects...`. */
export function buildPlugins(options: BootPluginsOptions): Booted {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'mega-test-'));
  const apps = options.apps ?? { [`app${Math.random().toString(36).slice(2, 8)}`]: {} };
  const given: MegaConfig = options.config ?? {};
  const config: MegaConfig = {
    ...given,
    server: { ...given.server, host: options.host ?? given.server?.host ?? '127.0.0.1' },
    ...(options.services ? { services: { ...given.services, ...options.services } } : {}),
  };
  const loaded: LoadedApp[] = Object.entries(apps).map(([name, appConfig]) => {
    const appDir = join(dir, 'apps', name);
    mkdirSync(appDir, { recursive: true });
    return { name, dir: appDir, config: appConfig, file: undefined };
  });
  const capture = captureLogs(options.logLevel);
  const kernel = new KernelClass({
    dir,
    config,
    apps: loaded,
    plugins: options.plugins,
    env: options.env ?? 'test',
    port: options.port ?? given.server?.port ?? 0,
    logger: options.logger ?? capture.logger,
  });
  return wrap(kernel, dir, capture);
}
