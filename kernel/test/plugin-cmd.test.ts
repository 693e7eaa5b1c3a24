/**
 * `mega plugin add|remove|list` against real files in a temporary npm workspace:
 *
 *   <tmp>/package.json              workspaces: app, plugins/*
 *   <tmp>/plugins/{ws-presence,metrics}   workspace plugins (ws-presence linked, metrics not yet)
 *   <tmp>/node_modules/@mega/kernel  -> this kernel (fixtures import definePlugin from it)
 *   <tmp>/node_modules/@acme/*       fixture plugins (base; child dependsOn base; audit; broken)
 *   <tmp>/app                        the project: mega.config.ts with comments and odd spacing
 *
 * npm is replaced by a recording stub, except in one test that runs a real, offline
 * `npm install <local dir>`.
 */

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addDefault, addPlugins, listedPlugins, removePlugin } from '../src/cli/plugin/config-edit.js';
import { npmInstaller } from '../src/cli/plugin/packages.js';
import { createProjectEditor } from '../src/cli/plugin/project-editor.js';
import { catalogue, withTarballs } from '../src/cli/plugin/source.js';
import type { Installer, InstallResult, PluginCommandOptions } from '../src/cli/plugin-cmd.js';
import { pluginCommand } from '../src/cli/plugin-cmd.js';

const here = dirname(fileURLToPath(import.meta.url));
const KERNEL_DIR = resolve(here, '..');
const REPO = resolve(KERNEL_DIR, '..');
const FIXTURES = join(here, 'fixtures', 'plugin-cmd');
const ORIGINAL_CONFIG = readFileSync(join(FIXTURES, 'project', 'mega.config.ts'), 'utf8');

let root: string;
let app: string;
let installs: Array<{ args: readonly string[]; cwd: string }>;
let installResult: (args: readonly string[], cwd: string) => Promise<InstallResult>;

const stubInstaller: Installer = async (args, cwd) => {
  installs.push({ args, cwd });
  return installResult(args, cwd);
};

async function run(argv: string[], cwd = app, install: Installer = stubInstaller, options: PluginCommandOptions = { checkout: null }) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await pluginCommand(argv, { cwd, stdout: (s) => stdout.push(s), stderr: (s) => stderr.push(s) }, { install, ...options });
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') };
}

const config = () => readFile(join(app, 'mega.config.ts'), 'utf8');

async function linkPackage(fixture: string, name: string, base = root): Promise<void> {
  const target = join(base, 'node_modules', name);
  await mkdir(dirname(target), { recursive: true });
  await cp(join(FIXTURES, 'packages', fixture), target, { recursive: true });
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'mega-plugin-cmd-'));
  app = join(root, 'app');
  installs = [];
  installResult = async () => ({ code: 0, output: '' });
  await writeFile(join(root, 'package.json'), JSON.stringify({ name: 'ws', private: true, workspaces: ['app', 'plugins/*'] }));
  await cp(join(FIXTURES, 'project'), app, { recursive: true });
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  await mkdir(join(root, 'node_modules', '@mega'), { recursive: true });
  await symlink(KERNEL_DIR, join(root, 'node_modules', '@mega', 'kernel'), 'dir');
  for (const p of ['ws-presence', 'metrics']) await cp(join(FIXTURES, 'packages', p), join(root, 'plugins', p), { recursive: true });
  await symlink(join(root, 'plugins', 'ws-presence'), join(root, 'node_modules', '@mega', 'ws-presence'), 'dir');
  for (const p of ['base', 'child', 'audit', 'broken']) await linkPackage(p, `@acme/${p}`);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('mega plugin add', () => {
  it('adds dependencies first, runs configure, and keeps every untouched byte', async () => {
    const result = await run(['add', '@acme/child']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(installs).toEqual([]);

    const out = result.stdout;
    expect(out.indexOf('+ @acme/base@1.0.0 (dependency of @acme/child)')).toBeGreaterThan(-1);
    expect(out.indexOf('+ @acme/base')).toBeLessThan(out.indexOf('+ @acme/child@2.0.0'));
    expect(out).toContain('  base is ready');
    expect(out).toContain('Enabled @acme/base, @acme/child.');

    expect(await config()).toBe(`// Mega project configuration: this header comment must survive every edit.
import { defineConfig } from '@mega/kernel';

/* Block comment; the odd spacing below is on purpose. */
// biome-ignore format: this quirky layout is the input of kernel/test/plugin-cmd.test.ts
export default defineConfig({
  // the apps to run
  apps:   [ 'simple' ],   // trailing comment on apps
  plugins: [
    '@acme/audit', // audit log
    '@acme/base',
    '@acme/child',
  ],
  server : { port:3000,  host: "0.0.0.0" },
  logger: {
      level: 'info',      // odd indent
  },
  base: { greeting: 'hello', retries: 3 },
  child: { enabled: true },
});
`);
    // Every original line survives, in order.
    const lines = (await config()).split('\n');
    let at = 0;
    for (const line of ORIGINAL_CONFIG.split('\n')) {
      at = lines.indexOf(line, at);
      expect(at, line).toBeGreaterThan(-1);
    }

    expect(await readFile(join(app, '.env'), 'utf8')).toBe('# token for @acme/base\nBASE_TOKEN=change-me\n');
    expect(await readFile(join(app, 'child', 'README.md'), 'utf8')).toBe('# child\n');
    expect(await readFile(join(app, 'apps', 'simple', 'app.config.ts'), 'utf8')).toBe(
      "import { defineAppConfig } from '@mega/kernel';\n\nexport default defineAppConfig({\n  hosts: ['localhost'],\n  childPages: ['home'],\n});\n",
    );
  });

  it('is idempotent: a second add leaves every file byte-identical and says so', async () => {
    expect((await run(['add', '@acme/child'])).code).toBe(0);
    const files = ['mega.config.ts', '.env', 'apps/simple/app.config.ts'];
    const before = await Promise.all(files.map((f) => readFile(join(app, f))));
    const again = await run(['add', '@acme/child']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('@acme/child is already installed');
    expect(again.stdout).toContain('Nothing to change.');
    const after = await Promise.all(files.map((f) => readFile(join(app, f))));
    expect(after).toEqual(before);
  });

  it('creates plugins when the config has none', async () => {
    await writeFile(join(app, 'mega.config.ts'), 'export default {\n  server: { port: 3000 }, // keep me\n};\n');
    expect((await run(['add', '@acme/audit'])).code).toBe(0);
    expect(await config()).toBe("export default {\n  server: { port: 3000 }, // keep me\n  plugins: ['@acme/audit'],\n};\n");
  });

  it('accepts the short form of Mega plugins, run from a subdirectory', async () => {
    const result = await run(['add', 'ws-presence'], join(app, 'apps', 'simple'));
    expect(result.code).toBe(0);
    expect(listedPlugins(await config(), 'mega.config.ts')).toEqual(['@acme/audit', '@mega/ws-presence']);
  });

  it('links a workspace plugin that is not yet resolvable by running npm install at the workspace root', async () => {
    installResult = async (_args, cwd) => {
      await symlink(join(cwd, 'plugins', 'metrics'), join(cwd, 'node_modules', '@mega', 'metrics'), 'dir');
      return { code: 0, output: '' };
    };
    const result = await run(['add', 'metrics']);
    expect(result.stderr).toBe('');
    expect(installs).toEqual([{ args: ['install'], cwd: root }]);
    expect(listedPlugins(await config(), 'mega.config.ts')).toContain('@mega/metrics');
  });

  it('installs a missing package with npm install <name> in the project', async () => {
    installResult = async (_args, cwd) => {
      await linkPackage('solo', '@acme/solo', cwd);
      return { code: 0, output: 'added 1 package' };
    };
    const result = await run(['add', '@acme/solo@^1']);
    expect(result.code).toBe(0);
    expect(installs).toEqual([{ args: ['install', '@acme/solo@^1'], cwd: app }]);
    expect(listedPlugins(await config(), 'mega.config.ts')).toContain('@acme/solo');
  });

  it('fails with exit 1 and close matches for an unknown Mega plugin, without calling npm', async () => {
    const before = await config();
    const result = await run(['add', 'ws-presense']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('unknown plugin "@mega/ws-presense"');
    expect(result.stderr).toContain('@mega/ws-presence');
    expect(installs).toEqual([]);
    expect(await config()).toBe(before);
  });

  it('turns an npm 404 into an unknown-plugin error with close matches', async () => {
    installResult = async () => ({
      code: 1,
      output: 'npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/@acme%2fbsae',
    });
    const result = await run(['add', '@acme/bsae']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[plugin.unknown] unknown plugin "@acme/bsae" (npm has no such package)');
    expect(result.stderr).toContain('@acme/base');
  });

  it('reports any other npm failure clearly', async () => {
    installResult = async () => ({ code: 1, output: 'npm error code ECONNREFUSED' });
    const result = await run(['add', '@acme/solo']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[plugin.install_failed] npm install @acme/solo failed with exit code 1');
  });

  it('does not enable a plugin whose configure step fails', async () => {
    const before = await config();
    const result = await run(['add', '@acme/broken']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[plugin.configure_failed] [@acme/broken] configure failed: needs a database URL');
    expect(await config()).toBe(before);
  });
});

describe('mega plugin remove', () => {
  it('refuses while a listed plugin depends on it, and allows it after the dependent is removed', async () => {
    await run(['add', '@acme/child']);
    const added = await config();

    const refused = await run(['remove', '@acme/base']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('cannot remove @acme/base: @acme/child depends on it');
    expect(await config()).toBe(added);

    const child = await run(['remove', '@acme/child']);
    expect(child.code).toBe(0);
    expect(child.stdout).toContain('- @acme/child removed from plugins in mega.config.ts');
    expect(child.stdout).toContain('its config key "child" stays in mega.config.ts');
    expect(child.stdout).toContain('to uninstall: npm uninstall @acme/child');
    expect((await run(['remove', '@acme/base'])).code).toBe(0);

    // Only the two plugin lines went away; everything else, the added keys included, is intact.
    expect(await config()).toBe(added.replace("    '@acme/base',\n    '@acme/child',\n", ''));
    expect(existsSync(join(root, 'node_modules', '@acme', 'base'))).toBe(true);
  });

  it('removes a plugin and its dependent in one command', async () => {
    await run(['add', '@acme/child']);
    const result = await run(['remove', '@acme/base', '@acme/child']);
    expect(result.code).toBe(0);
    expect(listedPlugins(await config(), 'mega.config.ts')).toEqual(['@acme/audit']);
  });

  it('says "not installed" with exit 0 for a plugin that is not listed', async () => {
    const result = await run(['remove', 'ws-presence']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('ws-presence is not installed');
    expect(await config()).toBe(ORIGINAL_CONFIG);
  });
});

describe('mega plugin list', () => {
  it('shows enabled plugins with versions and marks the available ones', async () => {
    const result = await run(['list'], app, stubInstaller, { checkout: REPO });
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines).toContain('Enabled (plugins in mega.config.ts):');
    expect(lines.find((l) => l.includes('@acme/audit'))).toMatch(/^ {2}@acme\/audit +0\.3\.0$/);
    expect(lines.find((l) => l.includes('@mega/ws-presence'))).toMatch(/^ {2}@mega\/ws-presence +0\.1\.0 +workspace$/);
    expect(lines.find((l) => l.includes('@mega/metrics'))).toMatch(/^ {2}@mega\/metrics +0\.1\.0 +workspace$/);
    expect(result.stdout).not.toContain('@mega/kernel');
    expect(result.stdout).toMatch(/Also in the catalogue .*\bhttp\b/);
    // Only plugins that exist (plugins/* of the checkout): no libraries, nothing from a hand-written wish list.
    for (const absent of ['codec', 'adapters', 'testing']) expect(result.stdout).not.toMatch(new RegExp(`\\b${absent}\\b`));

    await run(['add', 'ws-presence']);
    const after = (await run(['list'])).stdout.split('\n');
    expect(after.filter((l) => l.includes('@mega/ws-presence'))).toEqual([
      expect.stringMatching(/^ {2}@mega\/ws-presence +0\.1\.0$/),
      expect.stringMatching(/^\* @mega\/ws-presence +0\.1\.0 +workspace$/),
    ]);
  });
});

describe('the catalogue and local plugins', () => {
  it('is derived from the checkout: exactly the packages under plugins/', () => {
    const expected = readdirSync(join(REPO, 'plugins'))
      .filter((d) => existsSync(join(REPO, 'plugins', d, 'package.json')))
      .map((d) => JSON.parse(readFileSync(join(REPO, 'plugins', d, 'package.json'), 'utf8')).name as string)
      .sort();
    expect(catalogue(REPO)).toEqual(expected);
    expect(catalogue(REPO)).toContain('@mega/ws-presence');
    expect(catalogue(REPO)).not.toContain('@mega/kernel');
  });

  it('lists a ./plugins/x.ts plugin as a local file, and remove does not suggest npm uninstall for it', async () => {
    await writeFile(
      join(app, 'mega.config.ts'),
      "export default defineConfig({\n  plugins: ['@acme/audit', './plugins/x.ts', './plugins/gone.ts'],\n});\n",
    );
    await mkdir(join(app, 'plugins'));
    await writeFile(join(app, 'plugins', 'x.ts'), 'export default {};\n');
    const listed = (await run(['list'])).stdout.split('\n');
    expect(listed.find((l) => l.includes('./plugins/x.ts'))).toMatch(/^ {2}\.\/plugins\/x\.ts +local file$/);
    expect(listed.find((l) => l.includes('./plugins/gone.ts'))).toMatch(/local file not found/);
    expect(listed.join('\n')).not.toContain('not installed');
    const removed = await run(['remove', './plugins/x.ts']);
    expect(removed.code).toBe(0);
    expect(removed.stdout).not.toContain('npm uninstall');
    expect(removed.stdout).toContain('./plugins/x.ts is a local file; it stays in the project');
  });
});

describe('mega plugin add outside the monorepo', () => {
  let outside: string;
  const specs = {
    '@mega/kernel': 'file:/packs/mega-kernel-0.2.0-aaa.tgz',
    '@mega/ws': 'file:/packs/mega-ws-0.1.0-bbb.tgz',
    '@mega/ws-presence': 'file:/packs/mega-ws-presence-0.1.0-ccc.tgz',
  };
  const pack = async () => specs;
  const PKG = `${JSON.stringify({ name: 'outside', private: true, type: 'module', dependencies: { '@mega/kernel': 'file:/packs/old.tgz' } }, null, 2)}\n`;

  beforeEach(async () => {
    outside = await mkdtemp(join(tmpdir(), 'mega-outside-unit-'));
    await writeFile(join(outside, 'package.json'), PKG);
    await writeFile(join(outside, 'package-lock.json'), '{"lockfileVersion":3}\n');
    await writeFile(join(outside, 'mega.config.ts'), 'export default defineConfig({\n  plugins: [],\n});\n');
  });
  afterEach(async () => {
    await rm(outside, { recursive: true, force: true });
  });

  it('installs a @mega plugin from the packed checkout, with overrides for its @mega dependencies', async () => {
    const seen: unknown[] = [];
    const install: Installer = async (args, cwd) => {
      seen.push({ args, pkg: JSON.parse(await readFile(join(cwd, 'package.json'), 'utf8')) });
      return { code: 1, output: 'npm error code ECONNRESET' };
    };
    await run(['add', 'ws-presence'], outside, install, { checkout: REPO, pack });
    expect(seen).toEqual([
      {
        args: ['install', '--no-audit', '--no-fund'],
        pkg: expect.objectContaining({
          dependencies: { '@mega/kernel': specs['@mega/kernel'], '@mega/ws-presence': specs['@mega/ws-presence'] },
          overrides: specs,
        }),
      },
    ]);
  });

  it('rolls back package.json, package-lock.json and the config when the install fails, blaming the missing dependency', async () => {
    const install: Installer = async (_args, cwd) => {
      await writeFile(join(cwd, 'package-lock.json'), '{"half":"written"}\n');
      return { code: 1, output: "npm error code E404\nnpm error 404  '@mega/session@0.1.0' is not in this registry." };
    };
    const result = await run(['add', 'ws-presence'], outside, install, { checkout: REPO, pack });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('@mega/ws-presence needs @mega/session, which npm cannot find (404)');
    expect(result.stderr).not.toContain('unknown plugin');
    expect(result.stderr).toContain('restored package.json, package-lock.json');
    expect(await readFile(join(outside, 'package.json'), 'utf8')).toBe(PKG);
    expect(await readFile(join(outside, 'package-lock.json'), 'utf8')).toBe('{"lockfileVersion":3}\n');
    expect(await readFile(join(outside, 'mega.config.ts'), 'utf8')).toBe('export default defineConfig({\n  plugins: [],\n});\n');
  });

  it('does not blame a tarball for a dependency npm cannot find', async () => {
    const install: Installer = async () => ({
      code: 1,
      output: 'npm error 404 Not Found - GET https://registry.npmjs.org/@mega%2fkernel - Not found',
    });
    const result = await run(['add', './audit-1.0.0.tgz'], outside, install);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('./audit-1.0.0.tgz needs @mega/kernel, which npm cannot find (404)');
    expect(result.stderr).toContain('not on a registry');
    expect(result.stderr).not.toContain('unknown plugin');
  });

  it('withTarballs repoints existing @mega dependencies and keeps the rest', () => {
    const next = withTarballs(
      { name: 'x', dependencies: { '@mega/kernel': '^0.2.0', pg: '^8' }, devDependencies: { '@mega/ws': 'old' } },
      specs,
      ['@mega/ws-presence', '@mega/ws'],
    );
    expect(next.dependencies).toEqual({ '@mega/kernel': specs['@mega/kernel'], pg: '^8', '@mega/ws-presence': specs['@mega/ws-presence'] });
    expect(next.devDependencies).toEqual({ '@mega/ws': specs['@mega/ws'] });
    expect(next.overrides).toEqual(specs);
  });
});

describe('mega plugin usage', () => {
  it('prints help and rejects unknown commands and options', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: mega plugin <command>');
    expect((await run(['add', '--help'])).stdout).toContain('Usage: mega plugin add <plugin>...');

    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain('Usage: mega plugin <command>');

    expect((await run([])).code).toBe(2);
    expect((await run(['add'])).code).toBe(2);
    expect((await run(['add', '--force', 'x'])).code).toBe(2);
  });

  it('fails outside a Mega project', async () => {
    const result = await run(['list'], root);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('no mega.config.ts');
  });
});

describe('ProjectEditor', () => {
  const editor = () => createProjectEditor({ dir: app, configFile: join(app, 'mega.config.ts'), say: () => {} });

  it('adds config defaults only when absent, nested paths included', async () => {
    const project = editor();
    expect(await project.setConfigDefault('server', { port: 1 })).toBe(false);
    expect(await project.setConfigDefault('server.trustProxy', true)).toBe(true);
    expect(await project.setConfigDefault('services.caches.rate', { driver: 'memory' })).toBe(true);
    expect(await project.setConfigDefault('services.caches.rate', { driver: 'redis' })).toBe(false);
    const text = await config();
    expect(text).toContain('  server : { port:3000,  host: "0.0.0.0", trustProxy: true },\n');
    expect(text).toContain("  services: { caches: { rate: { driver: 'memory' } } },\n});\n");
  });

  it('rejects a key in the wrong file before it can break boot', async () => {
    await expect(editor().setConfigDefault('hosts', ['x'])).rejects.toMatchObject({ code: 'config.scope_violation' });
    await expect(editor().setConfigDefault('plugins', [], 'simple')).rejects.toMatchObject({ code: 'config.scope_violation' });
    await expect(editor().setConfigDefault('x', 1, 'nope')).rejects.toMatchObject({ code: 'app.not_found' });
  });

  it('appends .env keys once, with a comment and quoting when needed', async () => {
    await writeFile(join(app, '.env'), 'export PORT=3000');
    const project = editor();
    expect(await project.addEnv('PORT', '4000')).toBe(false);
    expect(await project.addEnv('GREETING', 'hello world', 'shown on /')).toBe(true);
    expect(await project.addEnv('GREETING', 'other')).toBe(false);
    expect(await readFile(join(app, '.env'), 'utf8')).toBe("export PORT=3000\n# shown on /\nGREETING='hello world'\n");
  });

  it('writes files only when missing and only inside the project', async () => {
    const project = editor();
    expect(await project.writeFileIfMissing('a/b.txt', 'one')).toBe(true);
    expect(await project.writeFileIfMissing('a/b.txt', 'two')).toBe(false);
    expect(await readFile(join(app, 'a', 'b.txt'), 'utf8')).toBe('one');
    await expect(project.writeFileIfMissing('../escape.txt', 'x')).rejects.toMatchObject({ code: 'config.invalid' });
  });
});

describe('config edits keep the layout they find', () => {
  const f = 'mega.config.ts';

  it('inline arrays grow inline, and shrink back', () => {
    const src = 'export default defineConfig({ plugins: ["a", "b"], x: 1 });\n';
    const added = addPlugins(src, f, ['c']);
    expect(added).toBe('export default defineConfig({ plugins: ["a", "b", "c"], x: 1 });\n');
    expect(removePlugin(removePlugin(added, f, 'a'), f, 'c')).toBe('export default defineConfig({ plugins: ["b"], x: 1 });\n');
    expect(removePlugin('export default { plugins: [ "a" ] };', f, 'a')).toBe('export default { plugins: [] };');
    expect(addPlugins('export default { plugins: [] };', f, ['a'])).toBe("export default { plugins: ['a'] };");
  });

  it('multi-line lists without a trailing comma get one item per line', () => {
    const src = "const config = {\n\tplugins: [\n\t\t'a' // first\n\t]\n} satisfies MegaConfig;\nexport default config;\n";
    expect(addPlugins(src, f, ['b'])).toBe(
      "const config = {\n\tplugins: [\n\t\t'a', // first\n\t\t'b'\n\t]\n} satisfies MegaConfig;\nexport default config;\n",
    );
    expect(addDefault(src, f, ['x'], 'y')).toBe(
      "const config = {\n\tplugins: [\n\t\t'a' // first\n\t],\n\tx: 'y'\n} satisfies MegaConfig;\nexport default config;\n",
    );
  });

  it('edits exactly where it should in files with tabs, CRLF line ends and a BOM', () => {
    const src =
      "\uFEFF// c\r\nexport default {\r\n\t\tplugins: [\r\n\t \t\t'a', // x\r\n\t\t\t'b',\r\n\t\t],\r\n\r\n\t\tother: 1 // last\r\n};\r\n";
    const added = addPlugins(src, f, ['c']);
    expect(added).toBe(src.replace("'b',\r\n", "'b',\r\n\t\t\t'c',\r\n"));
    expect(removePlugin(added, f, 'a')).toBe(added.replace("\t \t\t'a', // x\r\n", ''));
    expect(addDefault(src, f, ['x', 'y'], 1)).toBe(src.replace('other: 1 // last\r\n', 'other: 1, // last\r\n\t\tx: { y: 1 }\r\n'));
  });

  it('refuses what it cannot edit safely', () => {
    expect(() => addPlugins('export default { plugins: list };', f, ['a'])).toThrow(/not an array literal/);
    expect(() => addPlugins('export default makeConfig;', f, ['a'])).toThrow(/cannot find the config object/);
    expect(() => addPlugins('export default {', f, ['a'])).toThrow(/cannot parse/);
  });
});

describe('real npm', () => {
  it('installs a local plugin directory with npm, offline, and enables it', { timeout: 30_000 }, async () => {
    // A project outside any workspace: npm prunes what package.json does not list, so the
    // plugin resolves @mega/kernel from its own node_modules (npm links a directory install).
    const project = join(root, 'solo-project');
    await mkdir(project);
    await writeFile(join(project, 'package.json'), `${JSON.stringify({ name: 'solo-project', private: true, type: 'module' }, null, 2)}\n`);
    await writeFile(join(project, 'mega.config.ts'), 'export default defineConfig({\n  plugins: [],\n});\n');
    const pkg = join(root, 'pkgs', 'solo');
    await cp(join(FIXTURES, 'packages', 'solo'), pkg, { recursive: true });
    await mkdir(join(pkg, 'node_modules', '@mega'), { recursive: true });
    await symlink(KERNEL_DIR, join(pkg, 'node_modules', '@mega', 'kernel'), 'dir');
    // Stand-alone: not inside our temp workspace root, so npm acts on this project only.
    await writeFile(join(root, 'package.json'), '{}');

    const npmEnv = { npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
    const saved = Object.fromEntries(Object.keys(npmEnv).map((k) => [k, process.env[k]]));
    Object.assign(process.env, npmEnv);
    try {
      const started = Date.now();
      const result = await run(['add', '../pkgs/solo'], project, npmInstaller);
      expect(result.stderr.split('\n').filter((l) => !/npm warn/.test(l) && l !== '')).toEqual([]);
      expect(result.code).toBe(0);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result.stdout).toContain('Running npm install');
      expect(await readFile(join(project, 'mega.config.ts'), 'utf8')).toBe(
        "export default defineConfig({\n  plugins: ['@acme/solo'],\n});\n",
      );
      expect(JSON.parse(await readFile(join(project, 'package.json'), 'utf8')).dependencies).toEqual({ '@acme/solo': 'file:../pkgs/solo' });
      expect(await readFile(join(project, '.env'), 'utf8')).toBe('SOLO_MODE=on\n');
      // Adding the same directory again installs nothing.
      const again = await run(['add', '../pkgs/solo'], project, npmInstaller);
      expect(again.stdout).not.toContain('Running npm');
      expect(again.stdout).toContain('already installed');
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
