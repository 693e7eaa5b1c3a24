/**
 * Where `@mega/*` packages come from outside this repository. They are not on a registry, so the
 * checkout the CLI runs from is the source: every publishable workspace is packed with `npm pack`
 * into a cache (~/.cache/mega/packs, or $MEGA_PACK_CACHE) under a content-hashed name, and projects
 * depend on `file:/abs/path.tgz`. `overrides` map every `@mega/*` package to its tarball, so the
 * `@mega` dependencies of a plugin resolve from the same source instead of the registry.
 *
 * Tarballs rather than `file:` links to workspace folders: npm links a folder without installing
 * its dependencies (they would only resolve through the checkout's own node_modules), and a later
 * `npm ci` in the checkout would break every project. A tarball is a copy npm installs like any
 * registry package, and the hash in its name keeps package-lock integrity valid across repacks.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface WorkspacePackage {
  name: string;
  version: string;
  dir: string;
  /** Plugins live under plugins/; kernel, codec, adapters and testing are libraries. */
  plugin: boolean;
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Is `dir` a Mega checkout (the monorepo root with kernel/ and plugins/)? */
export function isCheckout(dir: string): boolean {
  const pkg = readJson(join(dir, 'package.json'));
  return Array.isArray(pkg?.workspaces) && existsSync(join(dir, 'kernel', 'package.json')) && existsSync(join(dir, 'plugins'));
}

/** The checkout this CLI runs from (kernel/{src,dist}/cli/plugin/ -> root), or $MEGA_CHECKOUT. */
export function ownCheckout(): string | undefined {
  const fromEnv = process.env.MEGA_CHECKOUT;
  if (fromEnv && isCheckout(resolve(fromEnv))) return resolve(fromEnv);
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
  return isCheckout(root) ? root : undefined;
}

/** The checkout a project was created from (`"mega": { "checkout" }` in its package.json), else this CLI's own. */
export function checkoutFor(projectDir: string): string | undefined {
  const recorded = (readJson(join(projectDir, 'package.json'))?.mega as { checkout?: unknown } | undefined)?.checkout;
  if (typeof recorded === 'string' && isCheckout(recorded)) return recorded;
  return ownCheckout();
}

/** The publishable packages of a checkout: its workspaces except apps/* and private ones. */
export function workspacePackages(root: string): WorkspacePackage[] {
  const globs = (readJson(join(root, 'package.json'))?.workspaces as string[] | undefined) ?? [];
  const dirs = globs.flatMap((glob) => {
    if (!glob.endsWith('/*')) return [join(root, glob)];
    const parent = join(root, glob.slice(0, -2));
    return existsSync(parent) ? readdirSync(parent).map((entry) => join(parent, entry)) : [];
  });
  return dirs.flatMap((dir) => {
    if (basename(dirname(dir)) === 'apps') return [];
    const pkg = readJson(join(dir, 'package.json'));
    if (typeof pkg?.name !== 'string' || !pkg.name.startsWith('@mega/') || pkg.private === true) return [];
    return [{ name: pkg.name, version: String(pkg.version ?? '0.0.0'), dir, plugin: basename(dirname(dir)) === 'plugins' }];
  });
}

/** The real plugins, from the checkout's plugins/<name>/package.json (never a hand-written list). */
export function catalogue(root: string | undefined = ownCheckout()): string[] {
  return root
    ? workspacePackages(root)
        .filter((p) => p.plugin)
        .map((p) => p.name)
        .sort()
    : [];
}

export function packCacheDir(): string {
  return process.env.MEGA_PACK_CACHE ? resolve(process.env.MEGA_PACK_CACHE) : join(homedir(), '.cache', 'mega', 'packs');
}

export type Runner = (cmd: string, args: readonly string[], cwd: string) => Promise<{ code: number; stdout: string; stderr: string }>;

const runNpm: Runner = (cmd, args, cwd) =>
  new Promise((done) => {
    const windows = process.platform === 'win32';
    const child = spawn(windows ? `${cmd}.cmd` : cmd, args, { cwd, shell: windows, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', (error) => done({ code: 127, stdout, stderr: `${stderr}\n${error.message}` }));
    child.on('close', (code) => done({ code: code ?? 1, stdout, stderr }));
  });

/** `names` and the `@mega` packages they depend on, transitively (from each workspace's package.json). */
function withMegaDependencies(packages: readonly WorkspacePackage[], names: readonly string[]): Set<string> {
  const byName = new Map(packages.map((p) => [p.name, p]));
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const pkg = byName.get(name);
    const deps = (pkg ? readJson(join(pkg.dir, 'package.json'))?.dependencies : undefined) as Record<string, string> | undefined;
    for (const dep of Object.keys(deps ?? {})) if (dep.startsWith('@mega/')) visit(dep);
  };
  for (const name of names) visit(name);
  return seen;
}

/**
 * Packs every built publishable workspace of `root` (one `npm pack`, about a second) and returns
 * name -> `file:<tarball>`. A tarball is named after its content hash, so an unchanged package
 * keeps its path and a changed one gets a new path (package-lock integrity stays true). A package
 * without its dist/ is left out (another one may be mid-build in the checkout), unless it is one
 * of `need` or what they depend on: then this fails and says to build.
 */
export async function packCheckout(root: string, run: Runner = runNpm, need: readonly string[] = []): Promise<Record<string, string>> {
  const all = workspacePackages(root);
  const built = (p: WorkspacePackage) => existsSync(join(p.dir, 'dist'));
  const needed = withMegaDependencies(all, need);
  const missingDist = all.filter((p) => !built(p) && needed.has(p.name));
  if (missingDist.length > 0) {
    throw new Error(
      `${missingDist.map((p) => p.name).join(', ')} ${missingDist.length > 1 ? 'are' : 'is'} not built; run "npm install && npm run build" in ${root} first`,
    );
  }
  const packages = all.filter(built);
  const cache = packCacheDir();
  mkdirSync(cache, { recursive: true });
  const staging = mkdtempSync(join(tmpdir(), 'mega-pack-'));
  try {
    const args = ['pack', '--json', '--pack-destination', staging, ...packages.flatMap((p) => ['-w', p.dir])];
    const result = await run('npm', args, root);
    if (result.code !== 0) throw new Error(`npm pack failed in ${root} (exit ${result.code}): ${result.stderr.trim().slice(-2000)}`);
    const specs: Record<string, string> = {};
    for (const file of readdirSync(staging)) {
      const data = readFileSync(join(staging, file));
      const hash = createHash('sha256').update(data).digest('hex').slice(0, 12);
      const target = join(cache, file.replace(/\.tgz$/, `-${hash}.tgz`));
      if (!existsSync(target)) copyFileSync(join(staging, file), target);
      // npm names a tarball <scope>-<name>-<version>.tgz.
      const pkg = packages.find((p) => file === `${p.name.slice(1).replace('/', '-')}-${p.version}.tgz`);
      if (pkg) specs[pkg.name] = `file:${target}`;
    }
    const missing = packages.filter((p) => !specs[p.name]);
    if (missing.length > 0) throw new Error(`npm pack produced no tarball for ${missing.map((p) => p.name).join(', ')}`);
    return specs;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/**
 * The package.json of a project installed from tarballs, after `specs` (name -> file:tarball):
 * every `@mega/*` dependency already there and each of `add` points at its tarball, and
 * `overrides` maps every packed package, so no `@mega` package is ever asked of the registry.
 */
export function withTarballs(
  pkg: Record<string, unknown>,
  specs: Record<string, string>,
  add: readonly string[] = [],
): Record<string, unknown> {
  const next: Record<string, unknown> = { ...pkg };
  for (const field of ['dependencies', 'devDependencies'] as const) {
    const deps = { ...((pkg[field] as Record<string, string> | undefined) ?? {}) };
    for (const name of Object.keys(deps)) if (specs[name]) deps[name] = specs[name];
    const dev = (pkg.devDependencies as Record<string, string> | undefined) ?? {};
    if (field === 'dependencies') for (const name of add) if (specs[name] && !(name in dev)) deps[name] = specs[name];
    if (Object.keys(deps).length > 0 || pkg[field]) next[field] = deps;
  }
  next.overrides = { ...((pkg.overrides as Record<string, unknown> | undefined) ?? {}), ...specs };
  return next;
}
