/**
 * Where plugins come from: the npm workspace the project lives in, the project's node_modules,
 * and npm itself (the catalogue of real plugins and the packed checkout are in source.ts).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** Packages under the `@mega` scope that are libraries, not plugins. */
const NOT_PLUGINS = new Set(['@mega/kernel', '@mega/codec', '@mega/adapters', '@mega/testing']);

export interface PackageInfo {
  name: string;
  version: string;
  dir: string;
}

function readPackage(dir: string): PackageInfo | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
    return typeof pkg.name === 'string' ? { name: pkg.name, version: typeof pkg.version === 'string' ? pkg.version : '?', dir } : undefined;
  } catch {
    return undefined;
  }
}

function* ancestors(from: string): Generator<string> {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    yield dir;
    if (dirname(dir) === dir) return;
  }
}

/** The installed package as Node would find it from `from` (node_modules of each ancestor). */
export function findPackage(name: string, from: string): PackageInfo | undefined {
  for (const dir of ancestors(from)) {
    const pkg = readPackage(join(dir, 'node_modules', name));
    if (pkg) return pkg;
  }
  return undefined;
}

/** The nearest ancestor whose package.json declares npm workspaces. */
export function findWorkspaceRoot(from: string): string | undefined {
  for (const dir of ancestors(from)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { workspaces?: unknown };
      if (pkg.workspaces) return dir;
    } catch {
      // no or unreadable package.json: keep walking
    }
  }
  return undefined;
}

function packagesIn(dir: string): PackageInfo[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => readPackage(join(dir, entry)) ?? []);
}

/** Installed packages sharing the scope of `name` (`@acme/*`), for suggestions on a typo. */
export function installedInScope(name: string, from: string): string[] {
  const scope = /^(@[^/]+)\//.exec(name)?.[1];
  if (!scope) return [];
  return [...ancestors(from)].flatMap((dir) => packagesIn(join(dir, 'node_modules', scope)).map((p) => p.name));
}

export interface Available {
  /** Workspace plugins (`<root>/plugins/*`); installing them means linking the workspace. */
  workspace: Map<string, PackageInfo>;
  /** Every plugin package found, workspace first, then `node_modules/@mega/*`. */
  all: Map<string, PackageInfo>;
  workspaceRoot: string | undefined;
}

export function availablePlugins(projectDir: string): Available {
  const workspaceRoot = findWorkspaceRoot(projectDir);
  const workspace = new Map((workspaceRoot ? packagesIn(join(workspaceRoot, 'plugins')) : []).map((p) => [p.name, p] as const));
  const all = new Map(workspace);
  for (const dir of new Set([projectDir, workspaceRoot].filter((d) => d !== undefined))) {
    for (const p of packagesIn(join(dir, 'node_modules', '@mega'))) if (!all.has(p.name)) all.set(p.name, p);
  }
  for (const name of NOT_PLUGINS) {
    workspace.delete(name);
    all.delete(name);
  }
  return { workspace, all, workspaceRoot };
}

/** `ws-presence` -> `@mega/ws-presence`; scoped names, and unscoped names already installed, stay as they are. */
export function normalizeName(input: string, projectDir: string): string {
  if (input.startsWith('@') || input.includes('/')) return input;
  return findPackage(input, projectDir) && !findPackage(`@mega/${input}`, projectDir) ? input : `@mega/${input}`;
}

/** Splits `name@range` (scoped or not); anything else npm accepts (path, tarball, URL) has no name yet. */
export function parseSpec(input: string): { name: string; range?: string } | undefined {
  const m = /^((?:@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*)(?:@(.+))?$/i.exec(input);
  if (!m?.[1]) return undefined;
  return m[2] ? { name: m[1], range: m[2] } : { name: m[1] };
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}

/** Close matches by edit distance or substring, compared without the `@mega/` prefix. */
export function closeMatches(name: string, candidates: Iterable<string>, limit = 5): string[] {
  const short = (n: string) => n.replace(/^@mega\//, '').toLowerCase();
  const wanted = short(name);
  const scored = [...new Set(candidates)].flatMap((c) => {
    const other = short(c);
    const distance = levenshtein(wanted, other);
    const contains = wanted.length >= 3 && (other.includes(wanted) || wanted.includes(other));
    return distance <= Math.max(2, Math.floor(wanted.length / 3)) || contains ? [{ c, distance }] : [];
  });
  return scored
    .sort((x, y) => x.distance - y.distance || x.c.localeCompare(y.c))
    .slice(0, limit)
    .map((s) => s.c);
}

export interface InstallResult {
  code: number;
  /** The tail of npm's output, to tell "no such package" from other failures. */
  output: string;
}

/** Runs npm with the given arguments in `cwd`, streaming its output line by line as it comes. */
export type Installer = (
  args: readonly string[],
  cwd: string,
  io: { stdout: (line: string) => void; stderr: (line: string) => void },
) => Promise<InstallResult>;

/** Turns chunks into whole lines, because each io call prints one line. */
function lineWriter(write: (line: string) => void): { push: (text: string) => void; flush: () => void } {
  let pending = '';
  return {
    push(text) {
      const parts = (pending + text).split(/\r?\n/);
      pending = parts.pop() ?? '';
      for (const line of parts) write(line);
    },
    flush() {
      if (pending) write(pending);
      pending = '';
    },
  };
}

export const npmInstaller: Installer = (args, cwd, io) =>
  new Promise((done) => {
    const windows = process.platform === 'win32';
    const child = spawn(windows ? 'npm.cmd' : 'npm', args, { cwd, shell: windows, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = lineWriter(io.stdout);
    const err = lineWriter(io.stderr);
    let tail = '';
    const keep = (writer: typeof out) => (chunk: Buffer) => {
      const text = chunk.toString();
      writer.push(text);
      tail = (tail + text).slice(-8192);
    };
    child.stdout.on('data', keep(out));
    child.stderr.on('data', keep(err));
    const finish = (result: InstallResult) => {
      out.flush();
      err.flush();
      done(result);
    };
    child.on('error', (error) => finish({ code: 127, output: `${tail}\n${error.message}` }));
    child.on('close', (code) => finish({ code: code ?? 1, output: tail }));
  });

export function isNotFound(result: InstallResult): boolean {
  return /\bE404\b|404 Not Found|is not in this registry/i.test(result.output);
}

/** The package npm could not find, from its 404 output ('@mega/ws@0.1.0' is not in this registry / GET .../@mega%2fws - Not found). */
export function missingPackage(output: string): string | undefined {
  const quoted = /'((?:@[^/'\s]+\/)?[^@'\s]+)@[^']*' is not in this registry/.exec(output)?.[1];
  if (quoted) return quoted;
  const url = /404 Not Found - GET \S+\/((?:@[^/\s]+%2[fF])?[^/\s]+) - /.exec(output)?.[1];
  return url ? decodeURIComponent(url) : undefined;
}
