/**
 * Commands contributed by the project's plugins (`commands` in definePlugin; `generators` are run
 * by generate.ts). The project's plugin list is read without booting anything: the plugins are
 * imported, never set up.
 */
import { loadProject } from '../config.js';
import { loadPlugins } from '../kernel.js';
import type { AnyPlugin } from '../plugin.js';
import type { CliIO } from './io.js';
import { findProjectDir, settleNodeEnv } from './service.js';

async function projectPlugins(io: CliIO): Promise<{ dir: string; file: string; plugins: AnyPlugin[] } | undefined> {
  const dir = findProjectDir(io.cwd);
  if (!dir) return undefined;
  const project = await loadProject(dir);
  return { dir: project.dir, file: project.file, plugins: await loadPlugins(project.config, project.dir, project.file) };
}

/** Runs `mega <command>` when a plugin of the project contributes it; undefined when none does. */
export async function runContributed(command: string, argv: string[], io: CliIO): Promise<number | undefined> {
  // NODE_ENV is settled as for mega start, before loading the project reads .env: an --env that
  // disagrees with the .env (a production project run as development, e.g. mega migrate down) is refused.
  const dir = findProjectDir(io.cwd);
  if (dir) {
    const at = argv.findIndex((a) => a === '--env' || a.startsWith('--env='));
    const flag = at < 0 ? undefined : argv[at]?.startsWith('--env=') ? argv[at]?.slice(6) : argv[at + 1];
    const settled = settleNodeEnv(dir, flag || undefined);
    if ('conflict' in settled) {
      io.stderr(`mega ${command}: ${settled.conflict}`);
      return 1;
    }
  }
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

export { generateCommand } from './generate.js';
