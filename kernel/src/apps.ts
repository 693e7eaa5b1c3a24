/**
 * App registry. Several apps can live in one process (routed by Host); code without a ctx (jobs,
 * scripts, module-level helpers) reaches an app with `getApp(name?)`.
 *
 * The registry sits on a global symbol so that two copies of the kernel module (a test runner
 * loading both source and build, a plugin that bundled its own copy) still see one registry.
 */

import type { AppConfig } from './config.js';
import { MegaError } from './errors.js';
import type { Logger } from './logger.js';

/** Per-app members contributed by plugins (`getApp('admin').bus`). Extend by declaration merging. */
// biome-ignore lint/suspicious/noEmptyInterface: extended by plugins through declaration merging
export interface AppExtensions {}

export interface AppBase {
  readonly name: string;
  /** Absolute directory of the app (`apps/<name>`). */
  readonly dir: string;
  readonly config: Readonly<AppConfig>;
  /** Host names this app answers for; empty means "default app". */
  readonly hosts: readonly string[];
  readonly log: Logger;
  state: 'registered' | 'ready' | 'stopped';
}

export type App = AppBase & AppExtensions;

const KEY = Symbol.for('mega.kernel.apps');
const shared = globalThis as unknown as Record<symbol, Map<string, App> | undefined>;
const apps: Map<string, App> = shared[KEY] ?? new Map<string, App>();
shared[KEY] = apps;

export function registerApp(app: App): void {
  if (apps.has(app.name) && apps.get(app.name) !== app && apps.get(app.name)?.state !== 'stopped') {
    throw new MegaError('app.duplicate', `an app named "${app.name}" is already registered in this process`);
  }
  apps.set(app.name, app);
}

export function unregisterApp(app: App): void {
  if (apps.get(app.name) === app) apps.delete(app.name);
}

export function listApps(): App[] {
  return [...apps.values()];
}

/**
 * The app called `name`, or the only app when no name is given.
 * Throws `app.not_found`, `app.not_initialized` (registered but boot has not finished) or
 * `app.ambiguous` (no name given and several apps run).
 */
export function getApp(name?: string): App {
  let app: App | undefined;
  if (name === undefined) {
    if (apps.size === 0) throw new MegaError('app.not_initialized', 'no Mega app has been started in this process yet');
    if (apps.size > 1) {
      throw new MegaError('app.ambiguous', `several apps run in this process (${[...apps.keys()].join(', ')}); call getApp(name)`, {
        details: { apps: [...apps.keys()] },
      });
    }
    app = apps.values().next().value;
  } else {
    app = apps.get(name);
    if (!app) {
      throw new MegaError('app.not_found', `no app named "${name}" (known: ${[...apps.keys()].join(', ') || 'none'})`, {
        details: { known: [...apps.keys()] },
      });
    }
  }
  if (app?.state !== 'ready') {
    throw new MegaError(
      'app.not_initialized',
      `app "${app?.name ?? name}" is ${app?.state ?? 'missing'}, not ready: wait for boot to finish`,
    );
  }
  return app;
}
