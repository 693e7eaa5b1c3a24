/**
 * `mega routes`: every HTTP and WebSocket route of the project as the server registers it (after
 * the `route` hook), with its app, hosts, handler and middleware; the routes plugins add straight
 * to the server (`/health`, `/ready`, `/metrics`, static files), and the middleware plugins add to
 * every route of an app (`http.use`, by phase). It boots the project without listening to see
 * exactly what `mega start` would serve, then stops it.
 *
 * The server keeps no list of plugin-level routes or of `http.use` calls, so this command watches
 * them being made: a tapable interceptor on `boot` tells which plugin's boot tap is running, a
 * Fastify `onRoute` hook (added right after @mega/http creates its server) records routes, and the
 * `http` service's `use` is wrapped on this one kernel. Nothing of it exists in `mega start`.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createJiti } from 'jiti';
import type { App } from '../apps.js';
import { loadProject } from '../config.js';
import type { RouteDefinition } from '../hooks.js';
import { Kernel, loadPlugins } from '../kernel.js';
import { createLogger } from '../logger.js';
import { type AnyPlugin, definePlugin } from '../plugin.js';
import type { CliIO } from './io.js';
import { findProjectDir, formatError, noProjectMessage, settleNodeEnv } from './service.js';

export const ROUTES_HELP = `Usage: mega routes [--json] [--app <name>]

Lists what the project in this directory serves:
  - its routes: app, method, path, kind (http or ws), handler (Controller.method, channel class)
    and the middleware and schema each carries;
  - routes plugins add for every app (/health and /ready of @mega/health, /metrics, static files);
  - global middleware plugins add to every route of an app (http.use), by phase and plugin, and
    the app-wide middleware of route files (router.http.use), as plugin "route files".
Boots the project without listening (services included) to list exactly what mega start serves.

Options:
  --app <name>   only this app (repeatable)
  --json         { routes, pluginRoutes, middleware } as JSON instead of tables
  -h, --help     show this help`;

export interface RouteRow {
  app: string;
  hosts: string[];
  kind: string;
  method: string;
  path: string;
  handler: string;
  before: string[];
  transform: string[];
  after: string[];
  schema: string[];
}

export interface PluginRouteRow {
  plugin: string;
  method: string;
  path: string;
  handler: string;
}

export interface MiddlewareRow {
  plugin: string;
  phase: string;
  name: string;
  apps: string[];
  methods: string[];
}

const fnName = (fn: unknown, labels?: Map<unknown, string>): string =>
  labels?.get(fn) ?? (typeof fn === 'function' && fn.name ? fn.name : 'anonymous');

const names = (steps: readonly unknown[] | undefined): string[] => (steps ?? []).map((s) => fnName(s));

export function routeRows(routes: readonly RouteDefinition[], labels?: Map<unknown, string>): RouteRow[] {
  return routes
    .map((r) => ({
      app: r.app.name,
      hosts: [...r.app.hosts],
      kind: r.kind,
      method: r.method,
      path: r.path,
      handler: fnName(r.handler, labels),
      before: names(r.options.before),
      transform: names(r.options.transform),
      after: names(r.options.after),
      schema: Object.keys(r.options.schema ?? {}),
    }))
    .sort((a, b) => a.app.localeCompare(b.app) || a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
}

function table(head: string[], cells: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => v.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  return [line(head), ...cells.map(line)].join('\n');
}

export function formatRoutes(rows: readonly RouteRow[]): string {
  if (rows.length === 0) return 'no routes';
  const cells = rows.map((r) => {
    const notes = [
      r.before.length ? `before: ${r.before.join(', ')}` : '',
      r.transform.length ? `transform: ${r.transform.join(', ')}` : '',
      r.after.length ? `after: ${r.after.join(', ')}` : '',
      r.schema.length ? `schema: ${r.schema.join(', ')}` : '',
    ].filter(Boolean);
    return [r.app + (r.hosts.length ? ` (${r.hosts.join(', ')})` : ''), r.method, r.path, r.kind, r.handler, notes.join('; ')];
  });
  return table(['APP', 'METHOD', 'PATH', 'KIND', 'HANDLER', 'MIDDLEWARE'], cells);
}

export function formatPluginRoutes(rows: readonly PluginRouteRow[]): string {
  return table(
    ['PLUGIN', 'METHOD', 'PATH', 'HANDLER'],
    rows.map((r) => [r.plugin, r.method, r.path, r.handler]),
  );
}

export function formatMiddleware(rows: readonly MiddlewareRow[]): string {
  return table(
    ['PHASE', 'PLUGIN', 'MIDDLEWARE', 'APPS', 'METHODS'],
    rows.map((r) => [r.phase, r.plugin, r.name, r.apps.join(', '), r.methods.join(', ') || 'all']),
  );
}

/**
 * Names for handlers: `HomeController.index` for a static member of an exported class (or object)
 * of the app's controllers/ and channels/, the class name for a channel. The modules come from the
 * module cache the route files filled, so the functions are the very ones the routes hold.
 */
async function handlerLabels(apps: readonly App[]): Promise<Map<unknown, string>> {
  const jiti = createJiti(import.meta.url, { interopDefault: false });
  const labels = new Map<unknown, string>();
  for (const app of apps) {
    for (const folder of ['controllers', 'channels']) {
      const dir = join(app.dir, folder);
      if (!existsSync(dir)) continue;
      for (const file of readdirSync(dir).filter((f) => /\.(ts|mts|js|mjs)$/.test(f) && !f.endsWith('.d.ts'))) {
        const mod = (await jiti.import(join(dir, file)).catch(() => undefined)) as Record<string, unknown> | undefined;
        for (const [exported, value] of Object.entries(mod ?? {})) {
          if (typeof value === 'function' && !labels.has(value)) labels.set(value, exported === 'default' ? value.name : exported);
          if ((typeof value !== 'function' && typeof value !== 'object') || value === null) continue;
          const owner = exported === 'default' && typeof value === 'function' ? value.name : exported;
          for (const key of Object.getOwnPropertyNames(value)) {
            if (key === 'prototype' || key === 'length' || key === 'name') continue;
            const member = (value as Record<string, unknown>)[key];
            if (typeof member === 'function' && !labels.has(member)) labels.set(member, `${owner}.${key}`);
          }
        }
      }
    }
  }
  return labels;
}

interface FastifyRouteOptions {
  method: string | string[];
  url: string;
  handler?: unknown;
}

interface FastifyLike {
  ready(): PromiseLike<unknown>;
  hasRoute(route: { method: string; url: string }): boolean;
}

interface Observed {
  pluginRoutes: PluginRouteRow[];
  middleware: MiddlewareRow[];
}

/** The inline plugin that watches routes and middleware being added (see the file comment). */
function observer(kernelRef: { kernel?: Kernel }, observed: Observed, current: { plugin: string }): AnyPlugin {
  return definePlugin({
    name: 'mega routes',
    version: '0.0.0',
    dependsOn: ['@mega/http'],
    setup(api) {
      const http = api.use<{ use: (mw: unknown, options?: { phase?: string; apps?: string[]; methods?: string[] }) => void }>('http');
      const use = http.use.bind(http);
      Object.defineProperty(http, 'use', {
        configurable: true,
        value: (mw: unknown, options: { phase?: string; apps?: string[]; methods?: string[] } = {}) => {
          observed.middleware.push({
            plugin: current.plugin,
            phase: options.phase ?? 'before',
            name: fnName(mw),
            apps: options.apps ?? kernelRef.kernel?.apps.map((a) => a.name) ?? [],
            methods: (options.methods ?? []).map((m) => m.toUpperCase()),
          });
          use(mw, options);
        },
      });
      // Set up right after @mega/http, so this stage-0 boot tap runs right after it created its server.
      api.tap('boot', () => {
        const fastify = api.use<{ fastify: { addHook(name: 'onRoute', fn: (route: FastifyRouteOptions) => void): void } }>('http').fastify;
        fastify.addHook('onRoute', (route) => {
          for (const method of ([] as string[]).concat(route.method)) {
            observed.pluginRoutes.push({
              plugin: current.plugin,
              method: method.toUpperCase(),
              path: route.url,
              handler: fnName(route.handler),
            });
          }
        });
      });
    },
  });
}

export async function routesCommand(argv: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { app: { type: 'string', multiple: true }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    io.stdout(ROUTES_HELP);
    return 0;
  }
  const dir = findProjectDir(io.cwd);
  if (!dir) {
    io.stderr(noProjectMessage('routes', io.cwd));
    return 1;
  }
  settleNodeEnv(dir, undefined);
  try {
    const project = await loadProject(dir, values.app ? { only: values.app } : {});
    const plugins = await loadPlugins(project.config, project.dir, project.file);
    if (!plugins.some((p) => p.name === '@mega/http')) {
      io.stderr('mega routes: @mega/http is not installed, so the project has no routes (mega plugin add http)');
      return 1;
    }
    const observed: Observed = { pluginRoutes: [], middleware: [] };
    const current = { plugin: '?' };
    const ref: { kernel?: Kernel } = {};
    // Listed first (it depends on @mega/http): the dependency order sets it up right after @mega/http.
    const kernel = new Kernel({
      dir: project.dir,
      config: project.config,
      apps: project.apps,
      plugins: [observer(ref, observed, current), ...plugins],
      configFile: 'mega.config.ts',
      port: 0,
      serve: false,
      logger: createLogger({ level: 'error' }),
    });
    ref.kernel = kernel;
    kernel.hooks.boot.intercept({
      tap: (tap) => {
        current.plugin = tap.name;
      },
    });
    await kernel.start();
    const http = kernel.use<{
      routes: readonly RouteDefinition[];
      fastify: FastifyLike;
      routeFileMiddleware?: (app: string) => ReadonlyArray<{ phase: string; fn: unknown }>;
    }>('http');
    // App-wide middleware of the route files (`router.http.use`), listed with the plugins' own.
    for (const app of kernel.apps) {
      for (const { phase, fn } of http.routeFileMiddleware?.(app.name) ?? []) {
        observed.middleware.push({ plugin: 'route files', phase, name: fnName(fn), apps: [app.name], methods: [] });
      }
    }
    // Without listening, Fastify has not loaded the plugins registered on it (static files): load them.
    current.plugin = '@mega/http';
    await http.fastify.ready();
    // @mega/http's own GET /health and static files are registered as it creates the server, before any hook can see them.
    for (const [path, handler] of [
      ['/health', 'liveness'],
      ['/static/*', 'static files (public/)'],
    ] as const) {
      if (http.fastify.hasRoute({ method: 'GET', url: path }) && !observed.pluginRoutes.some((r) => r.path === path)) {
        observed.pluginRoutes.push({ plugin: '@mega/http', method: 'GET', path, handler });
      }
    }
    const labels = await handlerLabels(kernel.apps);
    const rows = routeRows(http.routes, labels);
    await kernel.stop('routes listed');
    // Fastify also reports the app routes (and a HEAD beside each GET): keep what no app declared.
    const declared = new Set(http.routes.map((r) => `${r.method} ${r.path}`));
    const seen = new Set<string>();
    const pluginRoutes = observed.pluginRoutes
      .filter((r) => r.plugin !== 'mega routes' && !declared.has(`${r.method} ${r.path}`))
      .filter((r) => !(r.method === 'HEAD' && observed.pluginRoutes.some((g) => g.method === 'GET' && g.path === r.path)))
      .filter((r) => !seen.has(`${r.method} ${r.path}`) && seen.add(`${r.method} ${r.path}`))
      .sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
    const middleware = observed.middleware;
    if (values.json) {
      io.stdout(JSON.stringify({ routes: rows, pluginRoutes, middleware }, null, 2));
      return 0;
    }
    io.stdout(formatRoutes(rows));
    if (pluginRoutes.length) io.stdout(`\nRoutes added by plugins (every app):\n${formatPluginRoutes(pluginRoutes)}`);
    if (middleware.length)
      io.stdout(
        `\nGlobal middleware (http.use of plugins, router.http.use of route files; runs for every route of its apps):\n${formatMiddleware(middleware)}`,
      );
    return 0;
  } catch (error) {
    io.stderr(formatError(error));
    return 1;
  }
}
