/**
 * Commands and generators contributed by the project's plugins (`commands`, `generators` in
 * definePlugin). The project's plugin list is read without booting anything: the plugins are
 * imported, never set up.
 */
import { loadProject } from '../config.js';
import { loadPlugins } from '../kernel.js';
import type { AnyPlugin } from '../plugin.js';
import type { CliIO } from './io.js';
import { createProjectEditor } from './plugin/project-editor.js';
import { findProjectDir, noProjectMessage } from './service.js';

async function projectPlugins(io: CliIO): Promise<{ dir: string; file: string; plugins: AnyPlugin[] } | undefined> {
  const dir = findProjectDir(io.cwd);
  if (!dir) return undefined;
  const project = await loadProject(dir);
  return { dir: project.dir, file: project.file, plugins: await loadPlugins(project.config, project.dir, project.file) };
}

/** Runs `mega <command>` when a plugin of the project contributes it; undefined when none does. */
export async function runContributed(command: string, argv: string[], io: CliIO): Promise<number | undefined> {
  const project = await projectPlugins(io).catch(() => undefined);
  const owner = project?.plugins.find((p) => p.commands?.[command]);
  return owner?.commands?.[command]?.run(argv, io);
}

export async function listCommands(io: CliIO): Promise<void> {
  const project = await projectPlugins(io).catch(() => undefined);
  const rows = (project?.plugins ?? []).flatMap((p) =>
    Object.entries(p.commands ?? {}).map(([name, c]) => `  ${name.padEnd(22)}${c.summary} (${p.name})`),
  );
  if (rows.length) io.stdout(`\nCommands from this project's plugins:\n${rows.join('\n')}`);
}

/** `mega generate <kind> <name> [--app a] [--force]`: a generator a plugin declares. */
export async function generateCommand(argv: string[], io: CliIO): Promise<number> {
  // Generators declare no option specs, so `--key value` pairs are read by hand after the two positionals.
  const positionals: string[] = [];
  const values: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const [key, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const next = argv[i + 1];
    if (inline !== undefined) values[key] = inline;
    else if (next !== undefined && !next.startsWith('--') && positionals.length >= 2) values[key] = argv[++i] as string;
    else values[key] = true;
  }
  const project = await projectPlugins(io);
  if (!project) {
    io.stderr(noProjectMessage('generate', io.cwd));
    return 1;
  }
  const kinds = project.plugins.flatMap((p) => Object.entries(p.generators ?? {}).map(([kind, g]) => ({ kind, g, plugin: p.name })));
  const [kind, name] = positionals;
  const found = kinds.find((k) => k.kind === kind);
  if (!kind || !name || !found) {
    if (kind && !found) io.stderr(`mega generate: unknown kind "${kind}"`);
    io.stdout(
      `Usage: mega generate <kind> <name>\n\nKinds from this project's plugins:\n${kinds.map((k) => `  ${k.kind.padEnd(14)}${k.g.summary} (${k.plugin})`).join('\n') || '  none'}`,
    );
    return kind && name ? 2 : kind ? 2 : 0;
  }
  await found.g.run(
    name,
    createProjectEditor({ dir: project.dir, configFile: project.file, say: io.stdout }),
    values as Record<string, string | boolean>,
  );
  return 0;
}
