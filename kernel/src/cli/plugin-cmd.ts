/**
 * `mega plugin add|remove|list`.
 *
 * `add` works like AdonisJS `node ace add`: make the package resolvable (npm install, or link the
 * workspace), import it to read `dependsOn`, then for each plugin not yet enabled — dependencies
 * first — run its `configure(project)` and list it in `plugins` of mega.config.ts. A plugin is
 * listed only after its configure step succeeded, so a failed add can simply be run again.
 * Config edits are AST-anchored splices (see plugin/config-edit.ts) that keep the user's layout.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import semver from 'semver';
import { CONFIG_NAMES } from '../config.js';
import { ConfigError, isMegaError, PluginError } from '../errors.js';
import { KERNEL_VERSION } from '../kernel.js';
import type { AnyPlugin as PluginDefinition } from '../plugin.js';
import { checkKernelRange, importPlugin } from '../plugin.js';
import type { CliIO } from './io.js';
import { addPlugins, hasKey, listedPlugins, removePlugin } from './plugin/config-edit.js';
import type { Available, Installer, InstallResult } from './plugin/packages.js';
import {
  availablePlugins,
  CATALOGUE,
  closeMatches,
  findPackage,
  installedInScope,
  isNotFound,
  normalizeName,
  npmInstaller,
  parseSpec,
} from './plugin/packages.js';
import { createProjectEditor } from './plugin/project-editor.js';
import { findProjectDir } from './service.js';

export type { Installer, InstallResult } from './plugin/packages.js';

/** Where output goes: each call is one message (lines without their final newline), as in main.ts. */
export type CommandIo = CliIO;

export interface PluginCommandOptions {
  /** Runs npm; tests replace it to stay offline. */
  install?: Installer;
}

const HELP: Record<'main' | 'add' | 'remove' | 'list', string> = {
  main: `Usage: mega plugin <command> [options]

Commands:
  add <plugin>...      install plugins and the plugins they depend on, enable them in mega.config.ts
                       and run their configure step
  remove <plugin>...   disable plugins (refused while an enabled plugin depends on them)
  list                 enabled plugins, and the plugins available to add

<plugin> is a package name (@mega/ws-presence, @acme/thing@^1), the short form of a Mega plugin
(ws-presence), or a local directory or tarball.

Options:
  -h, --help           show help (also: mega plugin <command> --help)`,
  add: `Usage: mega plugin add <plugin>...

Installs each plugin with npm when it cannot be resolved from the project (workspace plugins are
linked instead), adds it and the plugins it depends on to \`plugins\` in mega.config.ts (dependencies
first), and runs each newly enabled plugin's configure step (config defaults, .env keys, files).
Plugins already enabled are left alone.

Examples:
  mega plugin add ws-presence          same as @mega/ws-presence
  mega plugin add @acme/audit@^2
  mega plugin add ../my-plugin`,
  remove: `Usage: mega plugin remove <plugin>...

Removes plugins from \`plugins\` in mega.config.ts. Refused while another enabled plugin declares
dependsOn on one of them (remove those first, or in the same command). The npm package stays
installed and the plugin's config keys stay in place.`,
  list: `Usage: mega plugin list

Shows the plugins enabled in mega.config.ts with their installed versions, and the plugins available
in the workspace (plugins/*) and in node_modules/@mega (* marks enabled ones).`,
};

const SUBCOMMANDS: Record<string, keyof typeof HELP> = { add: 'add', remove: 'remove', rm: 'remove', list: 'list', ls: 'list' };

interface Ctx {
  io: CommandIo;
  dir: string;
  file: string;
  /** The config file's name for messages. */
  rel: string;
  available: Available;
  install: Installer;
  out: (line: string) => void;
}

export async function pluginCommand(argv: string[], io: CommandIo, options: PluginCommandOptions = {}): Promise<number> {
  const [first, ...rest] = argv;
  if (first === '-h' || first === '--help' || first === 'help') {
    const topic = SUBCOMMANDS[rest[0] ?? ''];
    io.stdout(HELP[topic ?? 'main']);
    return 0;
  }
  const command = SUBCOMMANDS[first ?? ''];
  if (!command) {
    io.stderr(`${first === undefined ? 'mega plugin: missing command' : `mega plugin: unknown command "${first}"`}\n\n${HELP.main}`);
    return 2;
  }
  if (rest.some((a) => a === '-h' || a === '--help')) {
    io.stdout(HELP[command]);
    return 0;
  }
  const unknownOption = rest.find((a) => a.startsWith('-') && a !== '-');
  const usageError = unknownOption
    ? `unknown option ${unknownOption}`
    : command === 'list' && rest.length > 0
      ? 'list takes no arguments'
      : command !== 'list' && rest.length === 0
        ? `${command} needs at least one plugin name`
        : undefined;
  if (usageError) {
    io.stderr(`mega plugin ${command}: ${usageError}\n\n${HELP[command]}`);
    return 2;
  }

  try {
    const dir = findProjectDir(io.cwd);
    const file = dir && CONFIG_NAMES.map((n) => join(dir, n)).find((f) => existsSync(f));
    if (!dir || !file) {
      throw new ConfigError(
        'config.not_found',
        `no mega.config.ts in ${io.cwd} or above; run this inside a Mega project (mega new <dir> creates one)`,
      );
    }
    const ctx: Ctx = {
      io,
      dir,
      file,
      rel: basename(file),
      available: availablePlugins(dir),
      install: options.install ?? npmInstaller,
      out: io.stdout,
    };
    if (command === 'add') return await add(rest, ctx);
    if (command === 'remove') return await remove(rest, ctx);
    return await list(ctx);
  } catch (error) {
    const code = isMegaError(error) ? `[${error.code}] ` : '';
    io.stderr(`mega plugin ${command}: ${code}${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

// ---------------------------------------------------------------------------------------- add

async function add(specs: string[], ctx: Ctx): Promise<number> {
  const listed = new Set(listedPlugins(await readFile(ctx.file, 'utf8'), ctx.rel));
  const defs = new Map<string, PluginDefinition>();
  const order: string[] = [];
  const neededBy = new Map<string, string>();
  const path: string[] = [];

  // DFS over dependsOn, post-order, so every dependency is configured and listed before its dependents.
  const visit = async (name: string, installSpec: string, parent?: string): Promise<void> => {
    if (defs.has(name)) return;
    if (path.includes(name)) {
      const cycle = [...path.slice(path.indexOf(name)), name];
      throw new PluginError('plugin.cycle', `plugin dependency cycle: ${cycle.join(' -> ')}`, { plugin: name, details: { cycle } });
    }
    path.push(name);
    await ensureInstalled(name, installSpec, ctx);
    const def = await importPlugin(name, ctx.dir).catch((error: unknown) => {
      if (isMegaError(error)) throw error;
      throw new PluginError('plugin.load_failed', `cannot load ${name}: ${error instanceof Error ? error.message : String(error)}`, {
        plugin: name,
        cause: error,
      });
    });
    const range = checkKernelRange(def, KERNEL_VERSION);
    if (range) throw range;
    for (const dep of def.dependsOn ?? []) await visit(dep, dep, name);
    path.pop();
    defs.set(name, def);
    order.push(name);
    if (parent) neededBy.set(name, parent);
  };

  const requested: string[] = [];
  for (const spec of specs) {
    const { name, installSpec } = await nameOf(spec, ctx);
    requested.push(name);
    await visit(name, installSpec);
  }

  for (const name of requested) if (listed.has(name)) ctx.out(`${name} is already installed (listed in plugins in ${ctx.rel}).`);
  const fresh = order.filter((n) => !listed.has(n));
  if (fresh.length === 0) {
    ctx.out('Nothing to change.');
    return 0;
  }
  for (const name of fresh) {
    const def = defs.get(name);
    if (!def) continue;
    const why = neededBy.has(name) ? ` (dependency of ${neededBy.get(name)})` : '';
    ctx.out(`+ ${name}@${def.version}${why}`);
    if (def.configure) {
      try {
        await def.configure(createProjectEditor({ dir: ctx.dir, configFile: ctx.file, say: ctx.out, plugin: def }));
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new PluginError(
          'plugin.configure_failed',
          `[${name}] configure failed: ${reason}. ${name} was not enabled; fix the cause and run mega plugin add ${name} again`,
          {
            plugin: name,
            hook: 'configure',
            cause: error,
          },
        );
      }
    }
    const source = await readFile(ctx.file, 'utf8');
    await writeFile(ctx.file, addPlugins(source, ctx.rel, [name]));
    ctx.out(`  update ${ctx.rel} (plugins: ${name})`);
  }
  ctx.out(`Enabled ${fresh.join(', ')}.`);
  return 0;
}

const PATH_LIKE = /^(?:\.{1,2}(?:[/\\]|$)|[/\\]|[a-z]:[/\\]|file:|[a-z+]+:\/\/|git(?:hub|lab)?[:+])|\.(?:tgz|tar\.gz)$/i;

/** The package name behind what the user typed, installing path/tarball/URL specs to learn it. */
async function nameOf(spec: string, ctx: Ctx): Promise<{ name: string; installSpec: string }> {
  if (!PATH_LIKE.test(spec)) {
    const parsed = parseSpec(spec);
    if (!parsed) throw new PluginError('plugin.invalid_name', `"${spec}" is neither a package name nor a path, tarball or URL`);
    const name = normalizeName(parsed.name, ctx.dir);
    return { name, installSpec: parsed.range ? `${name}@${parsed.range}` : name };
  }
  const local = spec.startsWith('file:') || !/^[a-z+]+:/i.test(spec) ? resolve(ctx.io.cwd, spec.replace(/^file:/, '')) : undefined;
  const target = local ?? spec;
  if (local && existsSync(join(local, 'package.json'))) {
    const { name } = JSON.parse(readFileSync(join(local, 'package.json'), 'utf8')) as { name?: unknown };
    if (typeof name !== 'string') throw new PluginError('plugin.invalid', `${local}/package.json has no name`);
    const installed = findPackage(name, ctx.dir);
    if (!installed || realpathSync(installed.dir) !== realpathSync(local)) await runInstall(['install', target], ctx.dir, name, ctx);
    return { name, installSpec: name };
  }
  // A tarball or URL: npm knows the name only after installing; find it in package.json's dependencies.
  const before = dependencies(ctx.dir);
  await runInstall(['install', target], ctx.dir, spec, ctx);
  const after = dependencies(ctx.dir);
  const changed = Object.keys(after).filter((k) => after[k] !== before[k]);
  const name = changed.length === 1 ? changed[0] : Object.keys(after).find((k) => after[k]?.endsWith(basename(spec)));
  if (!name)
    throw new PluginError(
      'plugin.install_failed',
      `installed ${spec} but cannot tell which package it is; run mega plugin add <its package name>`,
    );
  return { name, installSpec: name };
}

function dependencies(dir: string): Record<string, string> {
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {};
  } catch {
    return {};
  }
}

/** Makes `name` resolvable from the project: nothing if it already is, else link the workspace or npm install. */
async function ensureInstalled(name: string, installSpec: string, ctx: Ctx): Promise<void> {
  const range = parseSpec(installSpec)?.range;
  const present = findPackage(name, ctx.dir);
  if (present && (!range || semver.satisfies(present.version, range))) return;
  const root = ctx.available.workspaceRoot;
  if (!present && root && ctx.available.workspace.has(name)) {
    // A workspace plugin is linked by installing the workspace, never fetched from the registry.
    await runInstall(['install'], root, name, ctx);
  } else {
    // Typos of Mega plugin names fail here, without a round trip to the registry.
    if (name.startsWith('@mega/') && !CATALOGUE.includes(name) && !ctx.available.all.has(name)) throw unknownPlugin(name, ctx, false);
    await runInstall(['install', installSpec], ctx.dir, name, ctx);
  }
  if (!findPackage(name, ctx.dir)) {
    throw new PluginError(
      'plugin.install_failed',
      `npm finished, but ${name} still cannot be found from ${ctx.dir}; check npm's output above`,
      { plugin: name },
    );
  }
}

async function runInstall(args: string[], cwd: string, name: string, ctx: Ctx): Promise<void> {
  ctx.out(`Running npm ${args.join(' ')} in ${relative(ctx.dir, cwd) || '.'} ...`);
  let result: InstallResult;
  try {
    result = await ctx.install(args, cwd, ctx.io);
  } catch (error) {
    result = { code: 1, output: error instanceof Error ? error.message : String(error) };
  }
  if (result.code === 0) return;
  if (isNotFound(result)) throw unknownPlugin(name, ctx, true);
  throw new PluginError(
    'plugin.install_failed',
    `npm ${args.join(' ')} failed with exit code ${result.code}; see npm's output above, fix the cause (network, registry access, version conflict) and run the command again`,
    {
      plugin: name,
      details: { args, cwd, code: result.code },
    },
  );
}

function unknownPlugin(name: string, ctx: Ctx, askedNpm: boolean): PluginError {
  const matches = closeMatches(name, [...CATALOGUE, ...ctx.available.all.keys(), ...installedInScope(name, ctx.dir)]);
  const hint = matches.length > 0 ? `; did you mean: ${matches.join(', ')}?` : '.';
  return new PluginError(
    'plugin.unknown',
    `unknown plugin "${name}"${askedNpm ? ' (npm has no such package)' : ''}${hint} Run mega plugin list to see what is available.`,
    {
      plugin: name,
      details: { name, suggestions: matches },
    },
  );
}

// ------------------------------------------------------------------------------------- remove

async function remove(specs: string[], ctx: Ctx): Promise<number> {
  let source = await readFile(ctx.file, 'utf8');
  const listed = listedPlugins(source, ctx.rel);
  const names: string[] = [];
  for (const spec of specs) {
    const name = [spec, `@mega/${spec}`].find((n) => listed.includes(n));
    if (name) {
      if (!names.includes(name)) names.push(name);
    } else ctx.out(`${spec} is not installed (not listed in plugins in ${ctx.rel}); nothing to remove.`);
  }
  if (names.length === 0) return 0;

  const defs = new Map<string, PluginDefinition | undefined>();
  for (const name of listed) {
    defs.set(
      name,
      await importPlugin(name, ctx.dir).catch((error: unknown) => {
        if (!names.includes(name))
          ctx.io.stderr(
            `mega plugin remove: warning: cannot check whether ${name} depends on ${names.join(', ')}: ${error instanceof Error ? error.message : String(error)}`,
          );
        return undefined;
      }),
    );
  }
  const blocked = names.flatMap((name) => {
    const dependents = listed.filter((other) => !names.includes(other) && defs.get(other)?.dependsOn?.includes(name));
    return dependents.length > 0 ? [{ name, dependents }] : [];
  });
  if (blocked.length > 0) {
    for (const { name, dependents } of blocked) {
      ctx.io.stderr(
        `mega plugin remove: [plugin.has_dependents] cannot remove ${name}: ${dependents.join(', ')} ${dependents.length > 1 ? 'depend' : 'depends'} on it. Remove ${dependents.length > 1 ? 'them' : 'it'} first (mega plugin remove ${dependents.join(' ')}), or remove them all together.`,
      );
    }
    return 1;
  }

  for (const name of names) source = removePlugin(source, ctx.rel, name);
  await writeFile(ctx.file, source);
  for (const name of names) {
    ctx.out(`- ${name} removed from plugins in ${ctx.rel}`);
    for (const key of Object.keys(defs.get(name)?.config?.global?.properties ?? {})) {
      if (hasKey(source, ctx.rel, [key]))
        ctx.out(
          `  its config key "${key}" stays in ${ctx.rel}; delete it before the next boot (keys no plugin declares fail with config.unknown_key)`,
        );
    }
  }
  ctx.out(`The npm package${names.length > 1 ? 's stay' : ' stays'} installed; to uninstall: npm uninstall ${names.join(' ')}`);
  return 0;
}

// --------------------------------------------------------------------------------------- list

async function list(ctx: Ctx): Promise<number> {
  const listed = listedPlugins(await readFile(ctx.file, 'utf8'), ctx.rel);
  const names = [...listed, ...ctx.available.all.keys()];
  const width = Math.max(0, ...names.map((n) => n.length)) + 2;
  ctx.out(`Enabled (plugins in ${ctx.rel}):`);
  if (listed.length === 0) ctx.out('  (none)');
  for (const name of listed) {
    ctx.out(`  ${name.padEnd(width)}${findPackage(name, ctx.dir)?.version ?? 'not installed (run npm install)'}`);
  }
  ctx.out('');
  ctx.out('Available (* = enabled):');
  const available = [...ctx.available.all.values()].sort((a, b) => a.name.localeCompare(b.name));
  if (available.length === 0) ctx.out('  (none found in the workspace or node_modules/@mega)');
  for (const pkg of available) {
    const where = ctx.available.workspace.has(pkg.name) ? '  workspace' : '';
    ctx.out(`${listed.includes(pkg.name) ? '* ' : '  '}${pkg.name.padEnd(width)}${pkg.version}${where}`);
  }
  const more = CATALOGUE.filter((n) => !ctx.available.all.has(n));
  if (more.length > 0) ctx.out(`\nAlso in the catalogue (mega plugin add <name>): ${more.map((n) => n.replace('@mega/', '')).join(', ')}`);
  return 0;
}
