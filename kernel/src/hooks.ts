/**
 * The kernel's hook points. One frozen object; only the kernel and the plugin that owns a call
 * site call `call*`/`promise`; plugins tap through their bound `api.tap`, during setup or boot.
 *
 * Every tap is wrapped once, at registration, by an interceptor: the tap name must be a loaded
 * plugin (so failures and shutdown order are attributed), errors are rethrown with plugin and hook,
 * boot taps get a timeout, shutdown taps are bounded and run in reverse dependency order. Wrapping
 * at registration keeps the call path free of extra work.
 */
import { AsyncParallelHook, AsyncSeriesBailHook, AsyncSeriesHook, SyncWaterfallHook } from 'tapable';
import type { App } from './apps.js';
import { isMegaError, MegaError, PluginError, within } from './errors.js';
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
  /** Raw bytes or text as received, before any parsing. Taps that decrypt/decompress replace it. */
  data: Buffer | string;
  /** Parsed envelope: a tap may set it; otherwise the WS plugin parses `data` after the last tap. */
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
  /** Plugins connect, register routes/channels, listen. Stage >= 1000 runs after all others (listen). */
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

/** What a tap of each hook receives and returns (`api.tap(hook, fn)`). */
export interface HookFns {
  boot: (kernel: Kernel) => void | Promise<void>;
  route: (route: RouteDefinition) => RouteDefinition;
  wsMessage: (frame: WsFrame) => MegaError | undefined | Promise<MegaError | undefined>;
  presence: (event: PresenceEvent) => void | Promise<void>;
  job: (event: JobEvent) => void | Promise<void>;
  shutdown: (context: ShutdownContext) => void | Promise<void>;
}

export interface TapOptions {
  /** Lower runs first (tapable stage); `boot` taps at >= 1000 run after every other boot tap. */
  stage?: number;
  /** Run before the taps of these plugins (e.g. `before: '@mega/ws'` to see frames before parsing). */
  before?: string | string[];
}

export interface HookPolicy {
  /** Load-order index of a plugin by name, or undefined for a name that is not a loaded plugin. */
  orderOf(plugin: string): number | undefined;
  bootTimeoutMs(plugin: string): number;
  shutdownTimeoutMs: number;
  /** True once the kernel is running: taps after that are refused. */
  frozen(): boolean;
  onShutdownError(plugin: string, error: unknown): void;
}

/**
 * A tap's failure with plugin and hook attached. A MegaError keeps its code (a deliberate boot
 * failure such as `adapter.unavailable`); anything else is `internal`, so callers that answer
 * clients (WS, HTTP) never forward a plugin's raw message as a rejection.
 */
export function wrapPluginError(error: unknown, plugin: string, hook: string): PluginError {
  if (error instanceof PluginError && error.plugin !== undefined) return error;
  const message = error instanceof Error ? error.message : String(error);
  const mega = isMegaError(error);
  const extra = mega ? { details: error.details, status: error.status } : {};
  return new PluginError(mega ? error.code : 'internal', `[${plugin}] ${hook}: ${message}`, { plugin, hook, cause: error, ...extra });
}

type AnyFn = (...args: unknown[]) => unknown;
type WrappableTap = { name: string; type: 'sync' | 'async' | 'promise'; fn: AnyFn; stage?: number };

function wrapTap(hook: HookName, tap: WrappableTap, policy: HookPolicy): WrappableTap {
  const plugin = tap.name;
  if (policy.frozen()) {
    throw new MegaError('hooks.frozen', `[${plugin}] cannot tap "${hook}" after the kernel started; tap during setup or boot`);
  }
  if (policy.orderOf(plugin) === undefined) {
    const message = `tap "${plugin}" on "${hook}" is not a loaded plugin; tap through api.tap in a plugin's setup`;
    throw new MegaError('hooks.unknown_tap', message, { details: { tap: plugin, hook } });
  }
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
  const asPromise = (...args: unknown[]) => Promise.resolve().then(() => inner(...args));
  const rethrow = (error: unknown) => {
    throw wrapPluginError(error, plugin, hook);
  };
  let run: (...args: unknown[]) => Promise<unknown>;
  let stage = tap.stage;
  if (hook === 'boot') {
    const ms = policy.bootTimeoutMs(plugin);
    const timeout = () => new PluginError('plugin.boot_timeout', `[${plugin}] boot did not finish within ${ms} ms`, { plugin, hook });
    run = (...args) => within(asPromise(...args), ms, timeout).catch(rethrow);
  } else if (hook === 'shutdown') {
    // Later-loaded plugins stop first; a failing or hung step is reported and the next one still runs.
    stage = (tap.stage ?? 0) - (policy.orderOf(plugin) ?? 0);
    const ms = policy.shutdownTimeoutMs;
    const timeout = () => new PluginError('plugin.shutdown_timeout', `[${plugin}] shutdown step exceeded ${ms} ms`, { plugin, hook });
    run = (...args) => within(asPromise(...args), ms, timeout).catch((error: unknown) => policy.onShutdownError(plugin, error));
  } else {
    run = (...args) => asPromise(...args).catch(rethrow);
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

/** Taps `fn` on `hook` under the plugin's name: the one place a tap is made (api.tap). */
export function tapHook<H extends HookName>(hooks: MegaHooks, plugin: string, hook: H, fn: HookFns[H], options: TapOptions = {}): void {
  const target = hooks[hook] as unknown as Record<'tap' | 'tapPromise', (tap: TapOptions & { name: string }, f: HookFns[H]) => void>;
  target[hook === 'route' ? 'tap' : 'tapPromise']({ ...options, name: plugin }, fn);
}
