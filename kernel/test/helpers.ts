import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KernelOptions } from '../src/kernel.js';
import { Kernel } from '../src/kernel.js';
import { createLogger } from '../src/logger.js';
import type { PluginDefinition } from '../src/plugin.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** A kernel with inline plugins and apps, no files, silent logs. */
export function testKernel(plugins: PluginDefinition[], extra: Partial<KernelOptions> = {}): Kernel {
  return new Kernel({
    dir: tmpdir(),
    config: {},
    apps: [{ name: `app${Math.random().toString(36).slice(2, 8)}`, dir: tmpdir(), config: {}, file: undefined }],
    plugins,
    logger: createLogger({ level: 'silent' }),
    ...extra,
  });
}

/** Writes a throwaway project: `files` maps relative paths to contents; node_modules links to the repo's. */
export function tempProject(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mega-test-'));
  // Its own package.json, as a real project has: module resolution must not escape into a parent package.
  const all = { 'package.json': '{ "name": "mega-test-project", "private": true, "type": "module" }\n', ...files };
  for (const [path, content] of Object.entries(all)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}
