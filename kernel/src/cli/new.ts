/**
 * `mega new <dir>`: a new single-app project (mega.config.ts and app.config.ts side by side, a
 * route file and a controller) that `mega start` serves as it is.
 *
 * Outside the Mega checkout the CLI runs from, the `@mega/*` dependencies point at tarballs packed
 * from that checkout (see plugin/source.ts), and `npm install` runs right away with npm's own output.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { KERNEL_VERSION } from '../kernel.js';
import type { CliIO } from './io.js';
import { ownCheckout, packCacheDir, packCheckout, withTarballs } from './plugin/source.js';
import { CliUsageError } from './start.js';

export const NEW_HELP = `Usage: mega new <dir> [--force] [--skip-install]

Creates a Mega project in <dir>: package.json, mega.config.ts, app.config.ts, routes/index.ts and
controllers/home.ts, then runs "npm install" so "npx mega start" works.

The @mega packages are not on a registry: they come from the Mega checkout this CLI runs from,
packed into ~/.cache/mega/packs ($MEGA_PACK_CACHE) and referenced as file: tarballs.

Options:
  --force          write into a directory that is not empty (existing files are kept)
  --skip-install   write the files only; run "npm install" yourself
  -h, --help       show this help`;

/** npm's rules for a package name, reduced to what a directory name can break. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9._-]*$/;

function packageJson(name: string, tarballs: Record<string, string> | undefined, checkout: string | undefined): string {
  const pkg: Record<string, unknown> = {
    name,
    private: true,
    version: '0.1.0',
    type: 'module',
    scripts: { start: 'mega start', dev: 'mega start --watch', routes: 'mega routes' },
    dependencies: { '@mega/kernel': `^${KERNEL_VERSION}`, '@mega/http': `^${KERNEL_VERSION}` },
  };
  const out = tarballs ? { ...withTarballs(pkg, tarballs), mega: { checkout } } : pkg;
  return `${JSON.stringify(out, null, 2)}\n`;
}

function files(name: string, pkg: string): Record<string, string> {
  return {
    'package.json': pkg,
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
    options: { force: { type: 'boolean' }, 'skip-install': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
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
  // Outside the checkout, @mega/* come from tarballs of it; inside, the workspace resolves them.
  const checkout = ownCheckout();
  const outside = checkout !== undefined && dir !== checkout && !dir.startsWith(checkout + sep);
  let tarballs: Record<string, string> | undefined;
  if (outside) {
    io.stdout(`Packing the @mega packages of ${checkout} into ${packCacheDir()} ...`);
    try {
      tarballs = await packCheckout(checkout);
    } catch (error) {
      io.stderr(`mega new: ${error instanceof Error ? error.message : String(error)}`);
      return 1;
    }
  }
  const written: string[] = [];
  for (const [path, content] of Object.entries(files(name, packageJson(name, tarballs, checkout)))) {
    const target = join(dir, path);
    if (existsSync(target)) continue;
    mkdirSync(join(target, '..'), { recursive: true });
    writeFileSync(target, content);
    written.push(path);
  }
  const rel = relative(io.cwd, dir) || '.';
  io.stdout(`Created ${name} in ${dir} (${written.join(', ') || 'nothing new'}).`);
  const install = tarballs !== undefined && !values['skip-install'];
  if (install) {
    io.stdout('Running npm install (from the packed checkout; the registry only for third-party packages) ...');
    const code = await npmInstall(dir);
    if (code !== 0) {
      io.stderr(
        `mega new: npm install failed with exit code ${code}; see npm's output above, fix the cause and run "npm install" in ${rel}`,
      );
      return 1;
    }
  }
  io.stdout(
    `\nNext:\n  cd ${rel}\n${install ? '' : '  npm install\n'}  npx mega start      # http://localhost:3000\n  npx mega start --watch   # restarts on every edit\n  npx mega plugin add ws-presence   # any plugin of mega plugin list`,
  );
  return 0;
}

/** `npm install` in `dir` with npm's output (and progress) on this terminal. */
function npmInstall(dir: string): Promise<number> {
  return new Promise((done) => {
    const windows = process.platform === 'win32';
    const child = spawn(windows ? 'npm.cmd' : 'npm', ['install', '--no-audit', '--no-fund'], {
      cwd: dir,
      shell: windows,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', () => done(127));
    child.on('close', (code) => done(code ?? 1));
  });
}
