/**
 * The kernel's hook points. One frozen object; only the kernel and the plugin that owns a call
 * site call `call*`/`promise`, everybody else taps, and only during setup/boot.
 *
 * Every tap is wrapped once, at registration, by an interceptor: errors are rethrown with the
 * plugin (tap name) and hook name, boot taps get a timeout, shutdown taps are bounded and ordered
 * in reverse dependency order. Wrapping at registration keeps the call path free of extra work.
 */
import { AsyncParallelHook, AsyncSeriesBailHook, AsyncSeriesHook, SyncWaterfallHook } from 'tapable';
import type { App } from './apps.js';
import { isMegaError, MegaError, PluginError } from './errors.js';
import type { Kernel } from './kernel.js';

/** Options a route carries; plugins add their own keys (security, schemas, tracing). */
export interface RouteOptions {
  before?: readonly unknown[];
  after?: readonly unknown[];
  transform?: readonly unknown[];
  schema?: Record<string, unknown>;
  [key: string]: unknown;
}

/** One HTTP or WS route as declared by an app, before the server freezes it. */
export interface RouteDefinition {
  kind: 'http' | 'ws';
  app: App;
  method: string;
  path: string;
  /** HTTP: controller function `(req, reply, ctx)`; WS: channel class. The owning plugin narrows it. */
  handler: unknown;
  options: RouteOptions;
  /** Free-form annotations added by `route` taps (e.g. `{ rateLimit: 100 }`). */
  meta: Record<string, unknown>;
}

/** An inbound WebSocket frame travelling through `wsMessage`; taps may replace `data`/`message`. */
export interface WsFrame {
  app: App;
  /** The connection object of the WS plugin; opaque to the kernel. */
  connection: unknown;
  /** Raw bytes or text as received. Taps that decrypt/decompress replace it. */
  data: Buffer | string;
  /** Parsed envelope, set by the tap that parses. */
  message?: { type: string; id?: string; ns?: string; payload?: unknown };
  /** Namespace (channel path) the frame arrived on. */
  ns: string;
}

export type PresenceEvent =
  | { kind: 'join'; app: App; ns: string; sessionId: string; userId?: string; channels: string[]; metadata?: Record<string, unknown> }
  | { kind: 'leave'; app: App; ns: string; sessionId: string; userId?: string }
  | { kind: 'metadata'; app: App; ns: string; sessionId: string; metadata: Record<string, unknown> }
  | { kind: 'broadcast'; app: App; ns: string; channel?: string; frame: Buffer | string; exceptSessionIds?: string[] }
  | { kind: 'direct'; app: App; ns: string; userId: string; frame: Buffer | string }
  | { kind: 'disconnect'; app: App; ns: string; sessionId: string; mode: 'kick' | 'requeue'; reason?: string };

export interface JobEvent {
  phase: 'before' | 'after' | 'fail';
  app?: App;
  job: { name: string; id: string; attempt: number; data: unknown };
  error?: MegaError;
  /** Milliseconds the run took (after/fail). */
  durationMs?: number;
}

export interface ShutdownContext {
  reason: string;
  signal?: NodeJS.Signals;
}

export interface MegaHooks {
  /** Plugins register services, adapters, routes, channels. Stage >= 1000 runs after all others (listen). */
  readonly boot: AsyncSeriesHook<[Kernel]>;
  /** Each route definition; taps return the (possibly replaced) definition. */
  readonly route: SyncWaterfallHook<[RouteDefinition]>;
  /** Each inbound frame; a tap returning a MegaError rejects the frame. */
  readonly wsMessage: AsyncSeriesBailHook<[WsFrame], MegaError | undefined>;
  /** Presence events after local delivery; cluster transports fan them out. */
  readonly presence: AsyncParallelHook<[PresenceEvent]>;
  /** Around each job run. */
  readonly job: AsyncSeriesHook<[JobEvent]>;
  /** Reverse dependency order, each step bounded. */
  readonly shutdown: AsyncSeriesHook<[ShutdownContext]>;
}

export type HookName = keyof MegaHooks;

export interface HookPolicy {
  /** Load-order index of a plugin by name; unknown names (kernel, tests) sort first. */
  orderOf(plugin: string): number;
  bootTimeoutMs(plugin: string): number;
  shutdownTimeoutMs: number;
  /** True once the kernel is running: taps after that are refused. */
  frozen(): boolean;
  onShutdownError(plugin: string, error: unknown): void;
}

export function wrapPluginError(error: unknown, plugin: string, hook: string): PluginError {
  if (error instanceof PluginError && error.plugin !== undefined) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = isMegaError(error) ? error.code : 'plugin.failed';
  return new PluginError(code, `[${plugin}] ${hook}: ${message}`, {
    plugin,
    hook,
    cause: error,
    details: isMegaError(error) ? error.details : undefined,
    ...(isMegaError(error) ? { status: error.status } : {}),
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  if (!(ms > 0) || !Number.isFinite(ms)) return promise;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

type AnyFn = (...args: unknown[]) => unknown;
type WrappableTap = { name: string; type: 'sync' | 'async' | 'promise'; fn: AnyFn; stage?: number };

function wrapTap(hook: HookName, tap: WrappableTap, policy: HookPolicy): WrappableTap {
  if (policy.frozen()) {
    throw new MegaError('hooks.frozen', `[${tap.name}] cannot tap "${hook}" after the kernel started; tap during setup or boot`);
  }
  const plugin = tap.name;
  const inner = tap.fn;
  if (tap.type === 'sync') {
    return {
      ...tap,
      fn: (...args: unknown[]) => {
        try {
          return inner(...args);
        } catch (error) {
          throw wrapPluginError(error, plugin, hook);
        }
      },
    };
  }
  // Normalise callback-style taps to promises so one wrapper fits all.
  const asPromise: (...args: unknown[]) => Promise<unknown> =
    tap.type === 'promise'
      ? (...args) => Promise.resolve().then(() => inner(...args))
      : (...args) =>
          new Promise((resolve, reject) => {
            inner(...args, (err: unknown, result: unknown) => (err ? reject(err) : resolve(result)));
          });
  let run: (...args: unknown[]) => Promise<unknown>;
  let stage = tap.stage;
  if (hook === 'boot') {
    run = (...args) =>
      withTimeout(
        asPromise(...args),
        policy.bootTimeoutMs(plugin),
        () =>
          new PluginError('plugin.boot_timeout', `[${plugin}] boot did not finish within ${policy.bootTimeoutMs(plugin)} ms`, {
            plugin,
            hook,
          }),
      ).catch((error: unknown) => {
        throw wrapPluginError(error, plugin, hook);
      });
  } else if (hook === 'shutdown') {
    // Later-loaded plugins stop first; a failing or hung step is reported and the next one still runs.
    stage = (tap.stage ?? 0) - policy.orderOf(plugin);
    run = (...args) =>
      withTimeout(
        asPromise(...args),
        policy.shutdownTimeoutMs,
        () =>
          new PluginError('plugin.shutdown_timeout', `[${plugin}] shutdown step exceeded ${policy.shutdownTimeoutMs} ms`, {
            plugin,
            hook,
          }),
      ).catch((error: unknown) => policy.onShutdownError(plugin, error));
  } else {
    run = (...args) =>
      asPromise(...args).catch((error: unknown) => {
        throw wrapPluginError(error, plugin, hook);
      });
  }
  return { ...tap, type: 'promise', fn: run, ...(stage === undefined ? {} : { stage }) };
}

export function createHooks(policy: HookPolicy): MegaHooks {
  const hooks: MegaHooks = {
    boot: new AsyncSeriesHook(['kernel'], 'boot'),
    route: new SyncWaterfallHook(['route'], 'route'),
    wsMessage: new AsyncSeriesBailHook(['frame'], 'wsMessage'),
    presence: new AsyncParallelHook(['event'], 'presence'),
    job: new AsyncSeriesHook(['event'], 'job'),
    shutdown: new AsyncSeriesHook(['context'], 'shutdown'),
  };
  for (const name of Object.keys(hooks) as HookName[]) {
    const hook = hooks[name];
    // tapable counts interceptors as use; only real taps should make a hot path pay for a call.
    hook.isUsed = () => hook.taps.length > 0;
    hook.intercept({
      name: 'mega-kernel',
      register: (tap) => wrapTap(name, tap as unknown as WrappableTap, policy) as unknown as typeof tap,
    });
  }
  return Object.freeze(hooks);
}
