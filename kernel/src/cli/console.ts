/**
 * `mega console`: a REPL with the project booted as `mega start` would boot it, without listening
 * (`serve: false`): services connect, plugins set up, route files load, nothing serves traffic.
 * Top-level await works; history lives in .mega/console_history; `.reload` stops the project,
 * drops its modules from the module cache and boots it again, so edits apply without leaving.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { createInterface } from 'node:readline';
import repl, { type REPLServer } from 'node:repl';
import { PassThrough } from 'node:stream';
import { parseArgs } from 'node:util';
import { type App, getApp } from '../apps.js';
import type { MegaContext } from '../context.js';
import { type Kernel, loadKernel } from '../kernel.js';
import { createLogger, type LoggerConfig } from '../logger.js';
import type { CliIO } from './io.js';
import { findProjectDir, formatError, noProjectMessage, settleNodeEnv } from './service.js';

export const CONSOLE_HELP = `Usage: mega console [--app <name>] [--env <name>]

Boots the project in this directory without listening and opens a REPL (top-level await works):

  app             the app (of a single-app project; else getApp('name'))
  getApp(name?)   an app by name; app.db(), app.bus, app.jobs, app.models ... as plugins contribute them
  ctx             a context of that app, as a handler gets one: ctx.db(), ctx.bus.emit(...), ctx.log
  ctxFor(name)    a fresh context of another app
  db(alias?)      the app's database (with @mega/db-postgres or another db plugin)
  models          the app's models (with @mega/models)
  use(service)    a service a plugin provides (use('http').routes, use('ws'), ...)
  kernel          the kernel: plugins, apps, config, env

  .reload         stop the project, reload its code and config, boot it again
  .exit, Ctrl+D   stop the project and leave

History: .mega/console_history. Logs below warn stay quiet (MEGA_LOG_LEVEL=info shows them).

Options:
  --app <name>   boot only this app (repeatable)
  --env <name>   NODE_ENV to use (refused when it disagrees with the .env)
  -h, --help     show this help`;

const HISTORY_LINES = 1000;

/** The names the REPL offers, rebuilt after each `.reload`. */
function helpers(kernel: Kernel): Record<string, unknown> {
  const only = kernel.apps.length === 1 ? (kernel.apps[0] as App) : undefined;
  const extended = only as (App & { db?: unknown; models?: unknown }) | undefined;
  return {
    kernel,
    app: only,
    getApp,
    ctx: only ? kernel.createContext(only, { id: 'console' }) : undefined,
    ctxFor: (name: string): MegaContext => kernel.createContext(getApp(name), { id: 'console' }),
    db: extended && typeof extended.db === 'function' ? extended.db : undefined,
    models: extended?.models,
    use: (name: string) => kernel.use(name),
  };
}

export async function consoleCommand(argv: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { app: { type: 'string', multiple: true }, env: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    io.stdout(CONSOLE_HELP);
    return 0;
  }
  const dir = findProjectDir(io.cwd);
  if (!dir) {
    io.stderr(noProjectMessage('console', io.cwd));
    return 1;
  }
  const settled = settleNodeEnv(dir, values.env);
  if ('conflict' in settled) {
    io.stderr(`mega console: ${settled.conflict}`);
    return 1;
  }
  const level = (process.env.MEGA_LOG_LEVEL as LoggerConfig['level']) ?? 'warn';
  const boot = async (): Promise<Kernel> => {
    const kernel = await loadKernel({ dir, serve: false, logger: createLogger({ level }), ...(values.app ? { only: values.app } : {}) });
    await kernel.start();
    return kernel;
  };
  let kernel: Kernel;
  try {
    kernel = await boot();
  } catch (error) {
    io.stderr(formatError(error));
    return 1;
  }
  const names = kernel.apps.map((a) => a.name);
  io.stdout(
    `Mega ${kernel.version} console (${kernel.env}), not listening: ${names.length === 1 ? `app ${names[0]}` : `apps ${names.join(', ')} (getApp('name'))`}; plugins: ${kernel.plugins.map((p) => p.name).join(', ') || 'none'}`,
  );
  io.stdout('Helpers: app, getApp(name?), ctx, ctxFor(name), db(alias?), models, use(service), kernel. .reload, .exit; .help lists more.');

  const historyFile = join(dir, '.mega', 'console_history');
  const terminal = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  // Piped input (`mega console < script`) is fed one line at a time, each once the previous one has
  // finished (its prompt is back): Node's REPL would read on while an `await` or `.reload` runs.
  const gate = terminal ? undefined : lineGate(process.stdin);
  const server: REPLServer = repl.start({
    prompt: 'mega> ',
    input: gate?.input ?? process.stdin,
    output: process.stdout,
    terminal,
    useGlobal: false,
    ignoreUndefined: true,
  });
  let closed = false;
  server.on('close', () => {
    closed = true;
  });
  if (gate) {
    const displayPrompt = server.displayPrompt.bind(server);
    server.displayPrompt = (preserveCursor?: boolean) => {
      displayPrompt(preserveCursor);
      gate.next();
    };
    gate.next();
  }
  const install = (k: Kernel) => {
    for (const [name, value] of Object.entries(helpers(k))) {
      Object.defineProperty(server.context, name, { value, configurable: true, enumerable: true, writable: true });
    }
  };
  install(kernel);

  // History of our own rather than setupHistory(): Node keeps none when the input is not a terminal.
  mkdirSync(dirname(historyFile), { recursive: true });
  const previous = existsSync(historyFile) ? readFileSync(historyFile, 'utf8').split('\n').filter(Boolean) : [];
  if (previous.length > HISTORY_LINES) writeFileSync(historyFile, `${previous.slice(-HISTORY_LINES).join('\n')}\n`, { mode: 0o600 });
  const withHistory = server as REPLServer & { history?: string[] };
  if (withHistory.history) withHistory.history.push(...previous.slice(-HISTORY_LINES).reverse());
  let writes = Promise.resolve();
  server.on('line', (line: string) => {
    if (!line.trim()) return;
    writes = writes.then(() => appendFile(historyFile, `${line}\n`, { mode: 0o600 })).catch(() => undefined);
  });

  let reloading: Promise<unknown> = Promise.resolve();
  server.defineCommand('reload', {
    help: 'Stop the project, reload its code and config, and boot it again',
    action(this: REPLServer) {
      this.clearBufferedCommand();
      const reload = async () => {
        await kernel.stop('console reload');
        // Project modules were loaded through jiti into Node's module cache: drop them (never node_modules).
        const cache = createRequire(import.meta.url).cache;
        let dropped = 0;
        for (const key of Object.keys(cache)) {
          if (key.startsWith(dir + sep) && !key.includes(`${sep}node_modules${sep}`)) {
            delete cache[key];
            dropped++;
          }
        }
        kernel = await boot();
        install(kernel);
        io.stdout(`reloaded: ${dropped} project modules, apps ${kernel.apps.map((a) => a.name).join(', ')}`);
      };
      reloading = reload().then(
        () => {
          if (!closed) this.displayPrompt();
        },
        (error: unknown) => {
          io.stderr(`${formatError(error)}\n(the project is stopped; fix the error and .reload again)`);
          if (!closed) this.displayPrompt();
        },
      );
    },
  });

  return new Promise<number>((done) => {
    server.on('exit', () => {
      const stop = reloading.then(() => (kernel.state === 'stopped' ? undefined : kernel.stop('console exit')));
      Promise.all([stop, writes]).then(
        () => done(0),
        (error: unknown) => {
          io.stderr(formatError(error));
          done(1);
        },
      );
    });
  });
}

/**
 * Holds piped input back: `next()` (called whenever the REPL shows its prompt again) passes one
 * line on; the REPL's input ends once every line has been passed and the source ended.
 */
function lineGate(source: NodeJS.ReadableStream): { input: PassThrough; next(): void } {
  const input = new PassThrough();
  const queue: string[] = [];
  let ended = false;
  let ready = false;
  const pump = () => {
    if (!ready) return;
    const line = queue.shift();
    if (line !== undefined) {
      ready = false;
      input.write(`${line}\n`);
    } else if (ended) input.end();
  };
  const lines = createInterface({ input: source, crlfDelay: Number.POSITIVE_INFINITY });
  lines.on('line', (line) => {
    queue.push(line);
    pump();
  });
  lines.on('close', () => {
    ended = true;
    pump();
  });
  return {
    input,
    next() {
      ready = true;
      // After the REPL finished its current line (it shows the prompt before it is done with it).
      setImmediate(pump);
    },
  };
}
