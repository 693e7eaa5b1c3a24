/**
 * `mega routes`: every HTTP and WebSocket route of the project as the server registers it (after
 * the `route` hook), with its app, hosts and middleware. It boots the project on a loopback
 * ephemeral port to see exactly what `mega start` would serve, then stops it.
 */
import { parseArgs } from 'node:util';
import type { RouteDefinition } from '../hooks.js';
import { loadKernel } from '../kernel.js';
import type { CliIO } from './io.js';
import { findProjectDir, formatError, noProjectMessage, settleNodeEnv } from './service.js';

export const ROUTES_HELP = `Usage: mega routes [--json] [--app <name>]

Lists the routes of the project in this directory: app, method, path, kind (http or ws), and the
middleware and schema each carries. Boots the project briefly (services included) to list exactly
what mega start serves.

Options:
  --app <name>   only this app (repeatable)
  --json         one JSON array instead of a table
  -h, --help     show this help`;

export interface RouteRow {
  app: string;
  hosts: string[];
  kind: string;
  method: string;
  path: string;
  before: string[];
  transform: string[];
  after: string[];
  schema: string[];
}

const names = (steps: readonly unknown[] | undefined): string[] =>
  (steps ?? []).map((s) => (typeof s === 'function' && s.name ? s.name : 'anonymous'));

export function routeRows(routes: readonly RouteDefinition[]): RouteRow[] {
  return routes
    .map((r) => ({
      app: r.app.name,
      hosts: [...r.app.hosts],
      kind: r.kind,
      method: r.method,
      path: r.path,
      before: names(r.options.before),
      transform: names(r.options.transform),
      after: names(r.options.after),
      schema: Object.keys(r.options.schema ?? {}),
    }))
    .sort((a, b) => a.app.localeCompare(b.app) || a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
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
    return [r.app + (r.hosts.length ? ` (${r.hosts.join(', ')})` : ''), r.method, r.path, r.kind, notes.join('; ')];
  });
  const head = ['APP', 'METHOD', 'PATH', 'KIND', 'MIDDLEWARE'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => v.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  return [line(head), ...cells.map(line)].join('\n');
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
  const { createLogger } = await import('../logger.js');
  try {
    // Routes are built at boot; nothing needs to listen or consume (serve: false).
    const kernel = await loadKernel({
      dir,
      port: 0,
      serve: false,
      logger: createLogger({ level: 'error' }),
      ...(values.app ? { only: values.app } : {}),
    });
    if (!kernel.plugins.some((p) => p.name === '@mega/http')) {
      io.stderr('mega routes: @mega/http is not installed, so the project has no routes (mega plugin add http)');
      return 1;
    }
    await kernel.start();
    const rows = routeRows(kernel.use<{ routes: readonly RouteDefinition[] }>('http').routes);
    await kernel.stop('routes listed');
    io.stdout(values.json ? JSON.stringify(rows, null, 2) : formatRoutes(rows));
    return 0;
  } catch (error) {
    io.stderr(formatError(error));
    return 1;
  }
}
