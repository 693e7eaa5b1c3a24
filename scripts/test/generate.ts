/**
 * `mega generate` through the real CLI, for the generator tests of the plugins: a temporary project
 * listing the plugin, the kind listed, a first run that creates the file and a second that keeps it.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeProject } from '@mega/testing';
import { expect } from 'vitest';
import { MEGA_BIN } from './procs.js';

const exec = promisify(execFile);

/** `mega generate ...args` in `dir`; resolves with its stdout, rejects with the process error (`code`, `stderr`). */
export async function megaGenerate(dir: string, ...args: string[]): Promise<string> {
  return (await exec(process.execPath, [MEGA_BIN, 'generate', ...args], { cwd: dir })).stdout;
}

/** A temporary project whose mega.config.ts lists `plugins` (plus `files`, e.g. app configs). */
export function generatorProject(plugins: string[], files: Record<string, string> = {}): string {
  return writeProject({ 'mega.config.ts': `export default { plugins: ${JSON.stringify(plugins)} };\n`, ...files });
}

/**
 * Checks that `mega generate` lists `kind` as `plugin`'s, that `mega generate kind ...args` creates
 * `file` and that running it again leaves the file as it is; returns the file's source.
 */
export async function generateOnce(dir: string, plugin: string, kind: string, file: string, args: string[]): Promise<string> {
  expect(await megaGenerate(dir)).toMatch(new RegExp(`\\n  ${kind}\\s+.*\\(${plugin.replace('/', '\\/')}\\)`));
  expect(await megaGenerate(dir, kind, ...args)).toContain(`create ${file}`);
  const source = readFileSync(join(dir, file), 'utf8');
  expect(await megaGenerate(dir, kind, ...args)).toContain(`${file} exists; left as it is`);
  expect(readFileSync(join(dir, file), 'utf8')).toBe(source);
  return source;
}
