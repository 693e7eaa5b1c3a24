/**
 * `mega generate|g <kind> <name> [--app a] [--dry-run] [--force] [--key value]`: runs a generator
 * a plugin of the project declares (or one of the kernel's own: plugin, test). Generators write
 * through a project editor that never overwrites a file unless `--force` is given, and writes
 * nothing with `--dry-run` (it shows each file instead). Every generated source file gets a test:
 * the generator's own, or one written here (the module loads, the project boots with it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, relative, resolve, sep } from 'node:path';
import { loadProject } from '../config.js';
import { ConfigError } from '../errors.js';
import { loadPlugins } from '../kernel.js';
import type { Generator, ProjectEditor } from '../plugin.js';
import { companionTest, pluginGenerator, testGenerator, withAddPlugin } from './generators.js';
import type { CliIO } from './io.js';
import { createProjectEditor } from './plugin/project-editor.js';
import { findProjectDir, noProjectMessage } from './service.js';

export const GENERATE_HELP = `Usage: mega generate <kind> <name> [options]      (alias: mega g)

Writes the files of a kind (and a test for them in test/). "mega generate" alone lists the kinds
this project's plugins contribute, e.g. controller and route (@mega/http), channel (@mega/ws), job
(@mega/jobs), schedule, worker, model and migration, plus plugin and test from the kernel.

Options:
  --app <name>   in apps/<name>/ of a multi-app project (default: the project root)
  --dry-run      show the files it would write, write nothing
  --force        overwrite files that exist (default: leave them and exit 1)
  --<key> <v>    options of the kind (e.g. --cron '0 * * * *' for schedule)
  -h, --help     show this help`;

/** Which Mega plugin brings a kind the project does not have yet, for the hint. */
const KIND_PLUGINS: Record<string, string> = {
  controller: 'http',
  route: 'http',
  channel: 'ws',
  job: 'jobs',
  schedule: 'scheduler',
  worker: 'workers',
  model: 'models',
  migration: 'migrations',
};

/** Kinds the kernel contributes itself, listed after the plugins' kinds. */
const BUILTIN: Record<string, Generator> = { plugin: pluginGenerator, test: testGenerator };

const isTest = (path: string) => /(^|\/)test\//.test(path) || /\.test\.[cm]?[jt]s$/.test(path);
const isSource = (path: string) => /\.(ts|mts)$/.test(path) && !path.endsWith('.d.ts');

interface Recorded {
  /** Files written (or shown, with --dry-run). */
  created: string[];
  /** Every file the generator asked for, written or not. */
  touched: string[];
  conflicts: string[];
  /** Writes held until the generator finished: none run when a file conflicts (without --force). */
  writes: Array<() => Promise<void>>;
}

/**
 * The editor generators get: files are created (or shown, with dryRun) and existing ones are left
 * alone unless `force`; everything written is recorded for the companion test and the exit code.
 */
function generateEditor(
  base: ProjectEditor,
  options: { dryRun: boolean; force: boolean; say: (line: string) => void },
): {
  editor: ProjectEditor;
  recorded: Recorded;
} {
  const { dryRun, force, say } = options;
  const dir = base.dir;
  const recorded: Recorded = { created: [], touched: [], conflicts: [], writes: [] };
  const show = (content: string) => {
    for (const line of content.replace(/\n$/, '').split('\n')) say(`    | ${line}`);
  };
  const editor: ProjectEditor = {
    dir,
    async writeFileIfMissing(path, content) {
      const file = resolve(dir, path);
      const rel = relative(dir, file);
      if (file === dir || !file.startsWith(dir + sep)) {
        throw new ConfigError('config.invalid', `a generator may only write inside the project (${path})`, { details: { path } });
      }
      recorded.touched.push(rel);
      if (existsSync(file)) {
        if (readFileSync(file, 'utf8') === content) {
          say(`  identical ${rel}`);
          return false;
        }
        if (!force) {
          recorded.conflicts.push(rel);
          say(`  exists ${rel} (left as it is; --force overwrites it)`);
          return false;
        }
        say(`  ${dryRun ? 'would overwrite' : 'overwrite'} ${rel}`);
      } else say(`  ${dryRun ? 'would create' : 'create'} ${rel}`);
      recorded.created.push(rel);
      if (dryRun) show(content);
      else
        recorded.writes.push(async () => {
          await mkdir(dirname(file), { recursive: true });
          await writeFile(file, content);
        });
      return true;
    },
    async setConfigDefault(key, value, app) {
      if (!dryRun) return base.setConfigDefault(key, value, app);
      say(`  would set ${key} = ${JSON.stringify(value)} in ${app ? `apps/${app}/app.config.ts` : 'mega.config.ts'} (unless set)`);
      return true;
    },
    async addEnv(key, value, comment) {
      if (!dryRun) return base.addEnv(key, value, comment);
      say(`  would add ${key} to .env (unless set)`);
      return true;
    },
    log: (message) => say(`  ${message}`),
  };
  return { editor, recorded };
}

/** Reads `<kind> <name>` and the flags; generators declare no option specs, so `--key value` pairs are read by hand. */
function parse(argv: string[]): { positionals: string[]; values: Record<string, string | boolean> } {
  const positionals: string[] = [];
  const values: Record<string, string | boolean> = {};
  const booleans = new Set(['dry-run', 'force', 'help']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h') {
      values.help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const [key, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const next = argv[i + 1];
    if (inline !== undefined) values[key] = inline;
    else if (!booleans.has(key) && next !== undefined && !next.startsWith('--')) values[key] = argv[++i] as string;
    else values[key] = true;
  }
  return { positionals, values };
}

export async function generateCommand(argv: string[], io: CliIO): Promise<number> {
  const { positionals, values } = parse(argv);
  if (values.help) {
    io.stdout(GENERATE_HELP);
    return 0;
  }
  const dir = findProjectDir(io.cwd);
  if (!dir) {
    io.stderr(noProjectMessage('generate', io.cwd));
    return 1;
  }
  // The project's plugins are imported to read their generators, never set up.
  const project = await loadProject(dir);
  const plugins = await loadPlugins(project.config, project.dir, project.file);
  const kinds = [
    ...plugins.flatMap((p) => Object.entries(p.generators ?? {}).map(([kind, g]) => ({ kind, g, plugin: p.name }))),
    ...Object.entries(BUILTIN).map(([kind, g]) => ({ kind, g, plugin: 'mega' })),
  ].filter((k, i, all) => all.findIndex((o) => o.kind === k.kind) === i);
  const [kind, name] = positionals;
  const found = kinds.find((k) => k.kind === kind);
  if (!kind || !name || !found) {
    if (kind && !found) {
      const from = KIND_PLUGINS[kind];
      io.stderr(
        `mega generate: unknown kind "${kind}"${from ? ` in this project: it comes with @mega/${from} (mega plugin add ${from})` : ''}`,
      );
    } else if (kind) io.stderr(`mega generate: ${kind} needs a name (mega generate ${kind} <name>)`);
    const list = kinds.map((k) => `  ${k.kind.padEnd(12)}${k.g.summary} (${k.plugin})`).join('\n');
    io.stdout(`Usage: mega generate <kind> <name> [--app a] [--dry-run] [--force]\n\nKinds of this project:\n${list}`);
    const more = Object.entries(KIND_PLUGINS).filter(([k]) => !kinds.some((o) => o.kind === k));
    if (more.length) io.stdout(`\nMore kinds come with plugins: ${more.map(([k, p]) => `${k} (mega plugin add ${p})`).join(', ')}.`);
    return kind ? 2 : 0;
  }
  const dryRun = values['dry-run'] === true;
  const force = values.force === true;
  if (dryRun) io.stdout(`mega generate ${kind} ${name} --dry-run: nothing is written`);
  const base = createProjectEditor({ dir: project.dir, configFile: project.file, say: io.stdout });
  const { editor, recorded } = generateEditor(base, { dryRun, force, say: io.stdout });
  const rel = relative(project.dir, project.file);
  // --dry-run and --force stay in the options too, for generators that write some files on their own.
  const configWrite = (content: string) => void recorded.writes.push(() => writeFile(project.file, content));
  await found.g.run(name, found.plugin === 'mega' ? withAddPlugin(editor, project.file, rel, dryRun, configWrite) : editor, values);

  const sources = recorded.created.filter((p) => isSource(p) && !isTest(p));
  if (kind !== 'test' && sources.length > 0 && !recorded.touched.some(isTest)) {
    const test = companionTest(kind, name, sources[0] as string);
    await editor.writeFileIfMissing(test.path, test.content);
  }
  if (recorded.conflicts.length > 0) {
    io.stderr(
      `mega generate: ${recorded.conflicts.length} file${recorded.conflicts.length > 1 ? 's' : ''} existed and ${recorded.conflicts.length > 1 ? 'were' : 'was'} left as ${recorded.conflicts.length > 1 ? 'they were' : 'it was'}: ${recorded.conflicts.join(', ')}; nothing was written (--force overwrites, --dry-run shows the files)`,
    );
    return 1;
  }
  // All or nothing: a refused file leaves no half-generated set (a route and test without their controller).
  for (const write of recorded.writes) await write();
  if (!dryRun && recorded.created.length > 0) {
    io.stdout(`\nNext: npx mega test${recorded.created.some((p) => p.includes('routes/')) ? ' · npx mega routes' : ''}`);
  }
  return 0;
}
