/**
 * Host-based routing of several apps on one port. Every route of an app is registered with a
 * `megaApp` constraint (find-my-way custom strategy); the value derived from a request is the app
 * whose `hosts` list its Host header, or DEFAULT for any other host. Apps without `hosts` are
 * default apps. Routes without the constraint (plugin routes such as /health) answer on every host.
 *
 * When no app declares hosts, no constraint is registered at all: a single-app project pays nothing.
 */
import type { IncomingMessage } from 'node:http';
import type { App } from '@mega/kernel';

/** Constraint value of the apps that declare no hosts (and of unknown hosts). */
export const DEFAULT_HOST = '*';
/** Past this many distinct Host values the lookup stops caching (random Host headers must not grow memory). */
const CACHE_LIMIT = 1024;

/** `Example.COM:8080` -> `example.com`, `[::1]:3000` -> `[::1]`. */
export function normalizeHost(header: string | undefined): string {
  if (!header) return '';
  let host = header.trim().toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  if (colon !== -1) host = host.slice(0, colon);
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

export class VirtualHosts {
  readonly enabled: boolean;
  readonly defaults: readonly App[];
  readonly #byHost = new Map<string, App>();
  readonly #cache = new Map<string, string>();

  constructor(apps: readonly App[]) {
    for (const app of apps) {
      for (const host of app.hosts) {
        const other = this.#byHost.get(host);
        if (other && other !== app) {
          throw Object.assign(new Error(`host ${host} is claimed by apps ${other.name} and ${app.name}`), { host });
        }
        this.#byHost.set(host, app);
      }
    }
    this.defaults = apps.filter((a) => a.hosts.length === 0);
    this.enabled = this.#byHost.size > 0;
  }

  /** The app a Host header belongs to: its host app, else the default app (if exactly one), else undefined. */
  appFor(hostHeader: string | undefined): App | undefined {
    const app = this.#byHost.get(normalizeHost(hostHeader));
    if (app) return app;
    return this.defaults.length === 1 ? this.defaults[0] : undefined;
  }

  /** True when a request on this Host has no app to go to (host-bound apps only, no default app). */
  isUnknown(hostHeader: string | undefined): boolean {
    return this.enabled && this.defaults.length === 0 && !this.#byHost.has(normalizeHost(hostHeader));
  }

  /** Constraint value of an app's routes. */
  valueOf(app: App): string {
    return app.hosts.length ? app.name : DEFAULT_HOST;
  }

  /** The find-my-way strategy (`constraints: { megaApp: ... }` in the Fastify options). */
  strategy() {
    const derive = (raw: string | undefined): string => {
      const key = raw ?? '';
      const hit = this.#cache.get(key);
      if (hit !== undefined) return hit;
      const app = this.#byHost.get(normalizeHost(raw));
      const value = app ? app.name : DEFAULT_HOST;
      if (this.#cache.size < CACHE_LIMIT) this.#cache.set(key, value);
      return value;
    };
    return {
      name: 'megaApp',
      storage() {
        const handlers = new Map<string, unknown>();
        return {
          get: (value: string) => handlers.get(value) ?? null,
          set: (value: string, store: unknown) => {
            handlers.set(value, store);
          },
        };
      },
      deriveConstraint: (req: IncomingMessage) => derive(req.headers.host),
      validate: (value: unknown) => {
        if (typeof value !== 'string') throw new Error('megaApp constraint must be a string');
      },
      mustMatchWhenDerived: false,
    };
  }
}
