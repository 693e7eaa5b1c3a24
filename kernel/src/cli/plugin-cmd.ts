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
import { readFile, rm, writeFile } from 'node:fs/promises';
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
  closeMatches,
  findPackage,
  installedInScope,
  isNotFound,
  missingPackage,
  normalizeName,
  npmInstaller,
  parseSpec,
} from './plugin/packages.js';
import { createProjectEditor } from './plugin/project-editor.js';
import { catalogue, checkoutFor, packCheckout, withTarballs } from './plugin/source.js';
import { startProgress } from './progress.js';
import { findProjectDir } from './service.js';

export type { Installer, InstallResult } from './plugin/packages.js';

/** Where output goes: each call is one message (lines without their final newline), as in main.ts. */
export type CommandIo = CliIO;

export interface PluginCommandOptions {
  /** Runs npm; tests replace it to stay offline. */
  install?: Installer;
  /** The checkout @mega plugins come from outside the monorepo (default: recorded in package.json, or this CLI's). */
  checkout?: string | null;
  /** Packs the checkout into tarballs (name -> file: spec); tests replace it. */
  pack?: (checkout: string, need?: readonly string[]) => Promise<Record<string, string>>;
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
Plugins already enabled are left alone. In a project outside the Mega checkout, @mega plugins and
their @mega dependencies come from tarballs packed from the checkout the project was made from
("mega" in package.json); a failed install puts package.json and package-lock.json back.

Examples:
  mega plugin add ws-presence          same as @mega/ws-presence
  mega plugin add @acme/audit@^2
  mega plugin add ../my-plugin`,
  remove: `Usage: mega plugin remove <plugin>...

Removes plugins from \`plugins\` in mega.config.ts. Refused while another enabled plugin declares
dependsOn on one of them (remove those first, or in the same command). The npm package stays
installed and the plugin's config keys stay in place.`,
  list: `Usage: mega plugin list

Shows the plugins enabled in mega.config.ts with their installed versions (or "local file"), the
plugins available in the workspace (plugins/*) and in node_modules/@mega (* marks enabled ones), and
the other plugins of the Mega checkout.`,
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
  /** The checkout that @mega/* packages come from, when the project is not in its workspace. */
  checkout: string | undefined;
  /** Real plugin names (from the checkout's plugins/*). */
  catalogue: string[];
  pack: (checkout: string, need?: readonly string[]) => Promise<Record<string, string>>;
  /** The tarball specs, packed at most once per command. */
  tarballs?: Record<string, string>;
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
    const available = availablePlugins(dir);
    const checkout = options.checkout === null ? undefined : (options.checkout ?? checkoutFor(dir));
    const ctx: Ctx = {
      io,
      dir,
      file,
      rel: basename(file),
      available,
      install: options.install ?? npmInstaller,
      out: io.stdout,
      // Inside the checkout's own workspace, plugins are linked from it, never packed.
      checkout: checkout && available.workspaceRoot !== checkout ? checkout : undefined,
      catalogue: checkout ? catalogue(checkout) : [...available.workspace.keys()],
      pack: options.pack ?? ((root, need) => packCheckout(root, undefined, need)),
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

  // Installing may rewrite package.json and package-lock.json: put them back when it fails.
  const snapshot = ['package.json', 'package-lock.json', ctx.rel].map((f) => {
    const path = join(ctx.dir, f);
    return { path, content: existsSync(path) ? readFileSync(path) : undefined };
  });
  const requested: string[] = [];
  try {
    // Outside the monorepo, the Mega plugins named here come from the packed checkout in one npm
    // install (their @mega dependencies with them) rather than one install each.
    if (ctx.checkout) {
      const batch = specs
        .filter((spec) => !PATH_LIKE.test(spec))
        .map((spec) => parseSpec(spec))
        .flatMap((parsed) => (parsed && !parsed.range ? [normalizeName(parsed.name, ctx.dir)] : []))
        .filter((name) => name.startsWith('@mega/') && ctx.catalogue.includes(name) && !findPackage(name, ctx.dir));
      if (batch.length > 1) {
        await useTarballs(ctx, batch);
        await runInstall(['install', '--no-audit', '--no-fund'], ctx.dir, batch.join(', '), ctx);
      }
    }
    for (const spec of specs) {
      const { name, installSpec } = await nameOf(spec, ctx);
      requested.push(name);
      await visit(name, installSpec);
    }
  } catch (error) {
    const restored: string[] = [];
    for (const { path, content } of snapshot) {
      const now = existsSync(path) ? readFileSync(path) : undefined;
      if (content === undefined ? now === undefined : now?.equals(content)) continue;
      if (content === undefined) await rm(path, { force: true });
      else await writeFile(path, content);
      restored.push(basename(path));
    }
    if (restored.length > 0) ctx.io.stderr(`mega plugin add: restored ${restored.join(', ')} as they were before this command`);
    throw error;
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
  // Its @mega dependencies must come from the checkout too, not the registry.
  await useTarballs(ctx, []);
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
  const known = ctx.catalogue.includes(name) || ctx.available.all.has(name);
  if (!present && root && ctx.available.workspace.has(name)) {
    // A workspace plugin is linked by installing the workspace, never fetched from the registry.
    await runInstall(['install'], root, name, ctx);
  } else if (name.startsWith('@mega/') && !known && (ctx.catalogue.length > 0 || !ctx.checkout)) {
    // Typos of Mega plugin names fail here, without a round trip to the registry.
    if (ctx.catalogue.length > 0) throw unknownPlugin(name, ctx, false);
    await runInstall(['install', installSpec], ctx.dir, name, ctx);
  } else if (ctx.checkout && name.startsWith('@mega/')) {
    // Outside the monorepo: the plugin and its @mega dependencies come from tarballs of the checkout.
    await useTarballs(ctx, [name]);
    await runInstall(['install', '--no-audit', '--no-fund'], ctx.dir, name, ctx);
  } else {
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

/** Points package.json's @mega dependencies (plus `add`) and overrides at tarballs of the checkout. */
async function useTarballs(ctx: Ctx, add: string[]): Promise<void> {
  if (!ctx.checkout) return;
  if (!ctx.tarballs) {
    const packing = startProgress(ctx.out, `Packing the @mega packages of ${ctx.checkout}`);
    try {
      ctx.tarballs = await ctx.pack(ctx.checkout, add);
      packing.done();
    } catch (error) {
      packing.fail();
      throw new PluginError('plugin.install_failed', error instanceof Error ? error.message : String(error), { cause: error });
    }
  }
  const unbuilt = add.filter((name) => !ctx.tarballs?.[name]);
  if (unbuilt.length > 0) {
    throw new PluginError(
      'plugin.install_failed',
      `${unbuilt.join(', ')} is not built in ${ctx.checkout}; run "npm run build" there first`,
    );
  }
  const file = join(ctx.dir, 'package.json');
  const pkg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  const next = withTarballs(pkg, ctx.tarballs, add);
  if (JSON.stringify(next) !== JSON.stringify(pkg)) await writeFile(file, `${JSON.stringify(next, null, 2)}\n`);
}

async function runInstall(args: string[], cwd: string, name: string, ctx: Ctx): Promise<void> {
  const installing = startProgress(ctx.out, `Running npm ${args.join(' ')} in ${relative(ctx.dir, cwd) || '.'}`);
  let result: InstallResult;
  try {
    result = await ctx.install(args, cwd, ctx.io);
  } catch (error) {
    result = { code: 1, output: error instanceof Error ? error.message : String(error) };
  }
  if (result.code === 0) {
    installing.done();
    return;
  }
  installing.fail();
  if (isNotFound(result)) {
    const missing = missingPackage(result.output);
    // A path, tarball or plugin that npm found is not to blame for a dependency npm could not find.
    if (missing && missing !== name) {
      const hint = missing.startsWith('@mega/')
        ? ctx.checkout
          ? ` ${missing} is not in ${ctx.checkout}; update the checkout`
          : ' @mega packages are not on a registry; create projects with mega new from a Mega checkout (or set MEGA_CHECKOUT) so they come from it'
        : '';
      throw new PluginError('plugin.install_failed', `${name} needs ${missing}, which npm cannot find (404).${hint}`, {
        plugin: name,
        details: { args, cwd, missing },
      });
    }
    throw unknownPlugin(name, ctx, true);
  }
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
  const matches = closeMatches(name, [...ctx.catalogue, ...ctx.available.all.keys(), ...installedInScope(name, ctx.dir)]);
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
  const packages = names.filter((n) => !isLocal(n));
  const locals = names.filter(isLocal);
  if (packages.length > 0)
    ctx.out(`The npm package${packages.length > 1 ? 's stay' : ' stays'} installed; to uninstall: npm uninstall ${packages.join(' ')}`);
  if (locals.length > 0)
    ctx.out(`${locals.join(', ')} ${locals.length > 1 ? 'are local files; they stay' : 'is a local file; it stays'} in the project`);
  return 0;
}

// --------------------------------------------------------------------------------------- list

/** A plugin listed by path (`./plugins/audit.ts`) rather than by package name. */
const isLocal = (name: string) => /^(?:\.{1,2}[/\\]|[/\\]|[a-z]:[/\\]|file:)/i.test(name);

async function list(ctx: Ctx): Promise<number> {
  // `mega plugin list | head`: the reader went away, so stop quietly instead of dying with EPIPE.
  const onError = (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
  };
  process.stdout.on('error', onError);
  try {
    return await listPlugins(ctx);
  } finally {
    process.stdout.off('error', onError);
  }
}

async function listPlugins(ctx: Ctx): Promise<number> {
  const listed = listedPlugins(await readFile(ctx.file, 'utf8'), ctx.rel);
  const names = [...listed, ...ctx.available.all.keys()];
  const width = Math.max(0, ...names.map((n) => n.length)) + 2;
  ctx.out(`Enabled (plugins in ${ctx.rel}):`);
  if (listed.length === 0) ctx.out('  (none)');
  for (const name of listed) {
    const state = isLocal(name)
      ? existsSync(resolve(ctx.dir, name.replace(/^file:/, '')))
        ? 'local file'
        : `local file not found (${resolve(ctx.dir, name.replace(/^file:/, ''))})`
      : (findPackage(name, ctx.dir)?.version ?? 'not installed (run npm install)');
    ctx.out(`  ${name.padEnd(width)}${state}`);
  }
  ctx.out('');
  ctx.out('Available (* = enabled):');
  const available = [...ctx.available.all.values()].sort((a, b) => a.name.localeCompare(b.name));
  if (available.length === 0) ctx.out('  (none found in the workspace or node_modules/@mega)');
  for (const pkg of available) {
    const where = ctx.available.workspace.has(pkg.name) ? '  workspace' : '';
    ctx.out(`${listed.includes(pkg.name) ? '* ' : '  '}${pkg.name.padEnd(width)}${pkg.version}${where}`);
  }
  const more = ctx.catalogue.filter((n) => !ctx.available.all.has(n));
  if (more.length > 0) ctx.out(`\nAlso in the catalogue (mega plugin add <name>): ${more.map((n) => n.replace('@mega/', '')).join(', ')}`);
  return 0;
}
