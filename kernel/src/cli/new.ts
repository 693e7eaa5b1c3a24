/**
 * `mega new <dir> [--template api|chat|crud]`: a new single-app project (mega.config.ts and
 * app.config.ts side by side, the template's routes, controllers and test) that `mega start` serves
 * and `mega test` tests as it is.
 *
 * Outside the Mega checkout the CLI runs from, the `@mega/*` dependencies point at tarballs packed
 * from that checkout (see plugin/source.ts), and `npm install` runs right away with npm's own output.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { KERNEL_VERSION } from '../kernel.js';
import type { CliIO } from './io.js';
import { checkoutFor, ownCheckout, packCacheDir, packCheckout, withTarballs, workspacePackages } from './plugin/source.js';
import { startProgress } from './progress.js';
import { findProjectDir } from './service.js';
import { CliUsageError } from './start.js';
import { commonFiles, devTools, TEMPLATES, type Template, type TemplateName, templateFor } from './templates.js';

export const NEW_HELP = `Usage: mega new <dir> [--template api|chat|crud] [--force] [--skip-install]

Creates a Mega project in <dir> and runs "npm install", so "npx mega start" and "npx mega test" work:
package.json, mega.config.ts, app.config.ts, routes and controllers (by template), tsconfig.json
(ctx, sock and msg typed in editors), vitest.config.ts and a passing test in test/, .env with one
generated MEGA_SECRET (sessions, CSRF and ASP derive their keys from it), .gitignore and a README.

Templates:
  api    (default) a JSON API: a controller, a validated POST, /health, and its test
  chat   apps/chat of the checkout: register/log in, an encrypted WebSocket chat with presence
  crud   apps/crud of the checkout: a model with its CRUD routes and migrations

The @mega packages are not on a registry: they come from the Mega checkout this CLI runs from,
packed into ~/.cache/mega/packs ($MEGA_PACK_CACHE) and referenced as file: tarballs.

Options:
  --template <t>   api, chat or crud (default api)
  --force          write into a directory that is not empty (existing files are kept)
  --skip-install   write the files only; run "npm install" yourself
  -h, --help       show this help`;

/** npm's rules for a package name, reduced to what a directory name can break. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9._-]*$/;

interface PackageInput {
  name: string;
  template: Template;
  tarballs: Record<string, string> | undefined;
  checkout: string | undefined;
}

function packageJson({ name, template, tarballs, checkout }: PackageInput): string {
  // Inside the checkout the workspace links the packages; their real versions keep npm from the registry.
  const versions = new Map((checkout ? workspacePackages(checkout) : []).map((p) => [p.name, p.version]));
  const range = (pkg: string) => versions.get(pkg) ?? `^${KERNEL_VERSION}`;
  const megaDeps = ['@mega/kernel', ...template.megaDependencies];
  const pkg: Record<string, unknown> = {
    name,
    private: true,
    version: '0.1.0',
    type: 'module',
    scripts: {
      start: 'mega start',
      dev: 'mega start --watch',
      test: 'mega test',
      typecheck: 'tsc -p .',
      console: 'mega console',
      routes: 'mega routes',
    },
    dependencies: { ...Object.fromEntries(megaDeps.map((d) => [d, range(d)])), ...template.dependencies },
    devDependencies: { '@mega/testing': range('@mega/testing'), ...devTools(checkout) },
  };
  const out = tarballs ? { ...withTarballs(pkg, tarballs), mega: { checkout } } : pkg;
  return `${JSON.stringify(out, null, 2)}\n`;
}

export async function newCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      template: { type: 'string', short: 't' },
      force: { type: 'boolean' },
      'skip-install': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    io.stdout(NEW_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new CliUsageError('mega new takes one directory (mega new my-app)');
  const templateName = (values.template ?? 'api') as TemplateName;
  if (!TEMPLATES.includes(templateName)) {
    throw new CliUsageError(`unknown template "${values.template}" (templates: ${TEMPLATES.join(', ')})`);
  }
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
  // The checkout this CLI runs from; a project's installed CLI (node_modules/@mega/kernel) uses the one it was made from.
  const here = findProjectDir(io.cwd);
  const checkout = ownCheckout() ?? (here ? checkoutFor(here) : undefined);
  let template: Template;
  try {
    template = templateFor({ name, template: templateName, checkout });
  } catch (error) {
    io.stderr(`mega new: ${(error as Error).message}`);
    return 1;
  }
  // Outside the checkout, @mega/* come from tarballs of it; inside, the workspace resolves them.
  const outside = checkout !== undefined && dir !== checkout && !dir.startsWith(checkout + sep);
  let tarballs: Record<string, string> | undefined;
  if (outside) {
    const packing = startProgress(io.stdout, `Packing the @mega packages of ${checkout} into ${packCacheDir()}`);
    try {
      tarballs = await packCheckout(checkout, undefined, ['@mega/kernel', '@mega/testing', ...template.megaDependencies]);
      packing.done(`${Object.keys(tarballs).length} packages`);
    } catch (error) {
      packing.fail();
      io.stderr(`mega new: ${error instanceof Error ? error.message : String(error)}`);
      return 1;
    }
  }
  const common = commonFiles(name, template, templateName);
  const all: Record<string, string> = {
    'package.json': packageJson({ name, template, tarballs, checkout }),
    ...template.files,
    ...common,
  };
  // A sample's own .gitignore (crud keeps its migrations journal under .mega/) gets the common lines too.
  const sampleIgnore = template.files['.gitignore'];
  if (sampleIgnore !== undefined) {
    const lines = new Set(sampleIgnore.split('\n'));
    const missing = (common['.gitignore'] ?? '').split('\n').filter((l) => l && !lines.has(l));
    all['.gitignore'] = `${sampleIgnore.replace(/\n?$/, '\n')}${missing.join('\n')}\n`;
  }
  const written: string[] = [];
  for (const [path, content] of Object.entries(all)) {
    const target = join(dir, path);
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content, path === '.env' ? { mode: 0o600 } : {});
    written.push(path);
  }
  const rel = relative(io.cwd, dir) || '.';
  io.stdout(`Created ${name} (template ${templateName}) in ${dir}: ${written.length ? written.join(', ') : 'nothing new'}.`);
  const install = tarballs !== undefined && !values['skip-install'];
  if (install) {
    const installing = startProgress(io.stdout, 'Running npm install (the packed checkout; the registry only for third-party packages)', {
      hint: 'the first install downloads vitest and typescript',
    });
    const code = await npmInstall(dir);
    if (code !== 0) {
      installing.fail();
      io.stderr(
        `mega new: npm install failed with exit code ${code}; see npm's output above, fix the cause and run "npm install" in ${rel}`,
      );
      return 1;
    }
    installing.done();
  }
  io.stdout(
    [
      '',
      'Next:',
      `  cd ${rel}`,
      ...(install ? [] : ['  npm install']),
      '  npx mega start          # http://localhost:3000 (--watch restarts on every edit)',
      '  npx mega test           # the tests in test/',
      '  npx mega generate       # controller, route, channel, job, plugin, test, ...',
      '  npx mega plugin add ws-presence   # any plugin of: npx mega plugin list',
    ].join('\n'),
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
