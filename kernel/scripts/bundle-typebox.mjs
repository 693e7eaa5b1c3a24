#!/usr/bin/env node
// Replaces dist/typebox.js (a re-export of @sinclair/typebox's `Type`) with a one-file bundle of the
// installed TypeBox: loading its ~200 ES modules one by one costs ~30 ms of CPU on every `mega start`
// (bench:startup), one file of 140 KB about 2 ms. Run after `tsc -b` (npm run build does). TypeBox keys its
// kinds with Symbol.for, so schemas from this copy and from the package (a plugin importing it
// directly) are interchangeable. `node kernel/scripts/bundle-typebox.mjs [out]` (default: dist/typebox.js).
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const kernel = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Writes the bundle to `out`; resolves to the TypeBox version it holds. */
export async function bundleTypebox(out = join(kernel, 'dist', 'typebox.js')) {
  const require = createRequire(join(kernel, 'package.json'));
  const pkg = join(dirname(require.resolve('@sinclair/typebox')), '..', '..');
  const { version } = require(join(pkg, 'package.json'));
  await build({
    input: join(pkg, 'build', 'esm', 'index.mjs'),
    output: { file: out, format: 'esm', banner: `// @sinclair/typebox ${version}, bundled by kernel/scripts/bundle-typebox.mjs` },
    logLevel: 'warn',
  });
  rmSync(`${out}.map`, { force: true }); // tsc's map of the re-export it replaced
  return version;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const version = await bundleTypebox(process.argv[2]);
  console.log(`kernel: bundled @sinclair/typebox ${version} into ${process.argv[2] ?? 'dist/typebox.js'}`);
}
