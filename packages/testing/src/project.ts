/** Throwaway Mega projects on disk, for tests that boot a project from its files or run `mega`. */
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

export interface WriteProjectOptions {
  /** Prefix of the temporary directory's name (default `mega-test-`). */
  prefix?: string;
  /**
   * The node_modules the project resolves its plugins from (linked as `<project>/node_modules`):
   * default the nearest one at or above `process.cwd()`; `false` for none.
   */
  nodeModules?: string | false;
}

/** The nearest `node_modules` directory at or above `from`. */
export function findNodeModules(from = process.cwd()): string | undefined {
  let dir = resolve(from);
  for (;;) {
    const candidate = join(dir, 'node_modules');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * Writes a project under the OS temp dir and returns its directory. `files` maps relative paths to
 * contents (`mega.config.ts`, `app.config.ts` or `apps/<name>/app.config.ts`, routes, local plugins).
 * The project gets its own package.json (module resolution must not escape into a parent package)
 * unless `files` brings one, and a `node_modules` link so `plugins: ['@mega/http']` resolves.
 */
export function writeProject(files: Record<string, string>, options: WriteProjectOptions = {}): string {
  const dir = mkdtempSync(join(tmpdir(), options.prefix ?? 'mega-test-'));
  const all = { 'package.json': '{ "name": "mega-test-project", "private": true, "type": "module" }\n', ...files };
  for (const [path, content] of Object.entries(all)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  const modules = options.nodeModules === undefined ? findNodeModules() : options.nodeModules;
  if (modules && !existsSync(join(dir, 'node_modules'))) symlinkSync(modules, join(dir, 'node_modules'));
  return dir;
}
