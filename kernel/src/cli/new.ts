/**
 * `mega new <dir>`: a new single-app project (mega.config.ts and app.config.ts side by side, a
 * route file and a controller) that `mega start` serves as it is. It writes files only; the
 * dependencies are installed by `npm install`, as the closing message says.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { KERNEL_VERSION } from '../kernel.js';
import type { CliIO } from './io.js';
import { CliUsageError } from './start.js';

export const NEW_HELP = `Usage: mega new <dir> [--force]

Creates a Mega project in <dir>: package.json, mega.config.ts, app.config.ts, routes/index.ts and
controllers/home.ts, ready for "npm install" and "npx mega start".

Options:
  --force      write into a directory that is not empty (existing files are kept)
  -h, --help   show this help`;

/** npm's rules for a package name, reduced to what a directory name can break. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9._-]*$/;

function files(name: string): Record<string, string> {
  return {
    'package.json': `${JSON.stringify(
      {
        name,
        private: true,
        version: '0.1.0',
        type: 'module',
        scripts: { start: 'mega start', dev: 'mega start --watch', routes: 'mega routes' },
        dependencies: { '@mega/kernel': `^${KERNEL_VERSION}`, '@mega/http': `^${KERNEL_VERSION}` },
      },
      null,
      2,
    )}\n`,
    'mega.config.ts': `import { defineConfig } from '@mega/kernel';

// Global settings. Add plugins with "npx mega plugin add <name>" (e.g. security, session, ws-presence).
export default defineConfig({
  plugins: ['@mega/http'],
  server: { port: 3000 },
});
`,
    'app.config.ts': `import { defineAppConfig } from '@mega/kernel';

// This app's settings; it sits beside mega.config.ts, so the project is one app on any Host.
export default defineAppConfig({});
`,
    'routes/index.ts': `import type { Router } from '@mega/http';
import { HomeController } from '../controllers/home.js';

export default (router: Router) => {
  router.http.get('/', HomeController.index);
};
`,
    'controllers/home.ts': `import type { Handler } from '@mega/http';

// Controllers are static methods (req, reply, ctx); what they return is sent as { data }.
export class HomeController {
  static index: Handler = async (_req, _reply, ctx) => ({ message: 'Hello from ${name}', app: ctx.app.name });
}
`,
    '.gitignore': 'node_modules/\n.mega/\n.env\n',
  };
}

export async function newCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    io.stdout(NEW_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new CliUsageError('mega new takes one directory (mega new my-app)');
  const dir = resolve(io.cwd, positionals[0] as string);
  const name = basename(dir).toLowerCase();
  if (!PACKAGE_NAME.test(name)) {
    throw new CliUsageError(
      `"${basename(dir)}" cannot be a package name: use letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
  if (existsSync(dir) && readdirSync(dir).length > 0 && !values.force) {
    io.stderr(`mega new: ${dir} is not empty; pick another directory or pass --force (existing files are kept)`);
    return 1;
  }
  const written: string[] = [];
  for (const [path, content] of Object.entries(files(name))) {
    const target = join(dir, path);
    if (existsSync(target)) continue;
    mkdirSync(join(target, '..'), { recursive: true });
    writeFileSync(target, content);
    written.push(path);
  }
  const rel = relative(io.cwd, dir) || '.';
  io.stdout(
    `Created ${name} in ${dir} (${written.join(', ') || 'nothing new'}).\n\nNext:\n  cd ${rel}\n  npm install\n  npx mega start      # http://localhost:3000\n  npx mega start --watch   # restarts on every edit`,
  );
  return 0;
}
