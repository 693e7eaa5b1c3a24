/** Throwaway Mega projects on disk, shared by every suite that boots a kernel from files or runs `mega`. */
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Writes a project under the OS temp dir: `files` maps relative paths to contents. It gets its own
 * package.json, as a real project has (module resolution must not escape into a parent package),
 * unless `files` brings one, and node_modules links to the repository's.
 */
export function writeProject(files: Record<string, string>, prefix = 'mega-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const all = { 'package.json': '{ "name": "mega-test-project", "private": true, "type": "module" }\n', ...files };
  for (const [path, content] of Object.entries(all)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}
