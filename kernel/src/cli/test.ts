/**
 * `mega test [vitest args]`: the project's tests with the project's own vitest (its
 * vitest.config.ts, its node_modules), `run` mode unless `--watch`. @mega/testing must resolve
 * from the project: a project made outside the checkout without it gets it installed from the
 * same packed checkout as its other @mega packages (never from the registry, which has none).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import type { CliIO } from './io.js';
import { findPackage, npmInstaller } from './plugin/packages.js';
import { checkoutFor, packCheckout, withTarballs } from './plugin/source.js';
import { startProgress } from './progress.js';
import { findProjectDir, noProjectMessage } from './service.js';

export const TEST_HELP = `Usage: mega test [--watch] [vitest options and file filters]

Runs the project's tests with its own vitest and vitest.config.ts (projects from mega new have both,
and @mega/testing: bootProject, inject, ws clients, log capture). Without --watch, vitest runs once
("vitest run"); everything else is passed to vitest as is:

  mega test                      every test once
  mega test test/home.test.ts    one file
  mega test -t "echo"            tests whose name matches
  mega test --watch              re-run on every change

Exit code: vitest's.`;

function vitestBin(dir: string): string | undefined {
  try {
    const pkg = createRequire(join(dir, 'package.json')).resolve('vitest/package.json');
    const bin = join(dirname(pkg), 'vitest.mjs');
    return existsSync(bin) ? bin : undefined;
  } catch {
    return undefined;
  }
}

/** Adds @mega/testing as a devDependency from the project's packed checkout; false when it cannot. */
async function installTesting(dir: string, io: CliIO): Promise<boolean> {
  const checkout = checkoutFor(dir);
  if (!checkout || dir === checkout || dir.startsWith(checkout + sep)) return false;
  const packing = startProgress(io.stdout, `mega test: @mega/testing is not installed; packing it from ${checkout}`);
  let specs: Record<string, string>;
  try {
    specs = await packCheckout(checkout, undefined, ['@mega/testing']);
    packing.done();
  } catch (error) {
    packing.fail();
    io.stderr(`mega test: ${(error as Error).message}`);
    return false;
  }
  const file = join(dir, 'package.json');
  const pkg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const before = readFileSync(file);
  pkg.devDependencies = { ...(pkg.devDependencies as Record<string, string> | undefined), '@mega/testing': specs['@mega/testing'] };
  writeFileSync(file, `${JSON.stringify(withTarballs(pkg, specs), null, 2)}\n`);
  const installing = startProgress(io.stdout, 'Running npm install --save-dev @mega/testing');
  const result = await npmInstaller(['install', '--no-audit', '--no-fund'], dir, io);
  if (result.code !== 0) {
    installing.fail();
    writeFileSync(file, before);
    io.stderr(`mega test: npm install failed (exit ${result.code}); package.json is as it was`);
    return false;
  }
  installing.done();
  return true;
}

export async function testCommand(argv: string[], io: CliIO): Promise<number> {
  if (argv[0] === '--help' || argv[0] === '-h') {
    io.stdout(TEST_HELP);
    return 0;
  }
  const dir = findProjectDir(io.cwd);
  if (!dir) {
    io.stderr(noProjectMessage('test', io.cwd));
    return 1;
  }
  const bin = vitestBin(dir);
  if (!bin) {
    io.stderr(`mega test: vitest is not installed in ${dir}: run "npm install --save-dev vitest" there (projects from mega new have it)`);
    return 1;
  }
  if (!findPackage('@mega/testing', dir) && !(await installTesting(dir, io))) {
    io.stderr('mega test: @mega/testing cannot be found from this project; tests that import it will fail (add it as a devDependency)');
  }
  const watch = argv.includes('--watch') || argv[0] === 'watch';
  const args = watch || argv[0] === 'run' ? argv.filter((a) => a !== '--watch') : ['run', ...argv];
  if (watch && args[0] !== 'watch') args.unshift('watch');
  return new Promise((done) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: dir, stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } });
    child.on('error', (error) => {
      io.stderr(`mega test: cannot run vitest: ${error.message}`);
      done(1);
    });
    child.on('exit', (code, signal) => done(code ?? (signal ? 1 : 0)));
  });
}
