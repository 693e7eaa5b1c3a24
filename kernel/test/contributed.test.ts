import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeProject } from '@mega/testing';
import { describe, expect, it } from 'vitest';
import { generateCommand, listCommands, runContributed } from '../src/cli/contributed.js';
import type { CliIO } from '../src/cli/io.js';

/** A project whose local plugin contributes a command, a generator and a primary half; setup must never run. */
const TOOL = `import { definePlugin } from '@mega/kernel';
export default definePlugin({
  name: '@acme/tool',
  version: '1.0.0',
  commands: {
    'tool-echo': { summary: 'print the arguments', async run(argv, io) { io.stdout('echo: ' + argv.join(' ') + ' in ' + io.cwd); return argv.includes('--fail') ? 3 : 0; } },
  },
  generators: {
    widget: {
      summary: 'a widget module',
      async run(name, project, options) {
        await project.writeFileIfMissing('widgets/' + name + '.ts', 'export const ' + name + ' = ' + JSON.stringify(options.color ?? 'plain') + ';\\n');
        project.log('wrote widgets/' + name + '.ts');
      },
    },
  },
  setup() { throw new Error('commands and generators must not set plugins up'); },
});
`;

function io(cwd: string) {
  const out: string[] = [];
  const err: string[] = [];
  const cli: CliIO = { cwd, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s) };
  return { cli, out, err };
}

const project = () =>
  writeProject({
    'mega.config.ts': `export default { plugins: ['./plugins/tool.ts'] };\n`,
    'app.config.ts': 'export default {};\n',
    'plugins/tool.ts': TOOL,
  });

describe('contributed CLI commands', () => {
  it('dispatches `mega <command>` to the plugin that declares it, with argv and exit code', async () => {
    const dir = project();
    const t = io(join(dir, 'plugins')); // from a subdirectory too: the project is found upwards
    expect(await runContributed('tool-echo', ['a', 'b'], t.cli)).toBe(0);
    expect(t.out).toEqual([`echo: a b in ${join(dir, 'plugins')}`]);
    expect(await runContributed('tool-echo', ['--fail'], t.cli)).toBe(3);
    expect(await runContributed('no-such-command', [], t.cli)).toBeUndefined();
    // Outside a project nothing is contributed.
    expect(await runContributed('tool-echo', [], io('/').cli)).toBeUndefined();
  });

  it('settles NODE_ENV like mega start: an --env that disagrees with the .env is refused before the command runs', async () => {
    const dir = project();
    writeFileSync(join(dir, '.env'), 'NODE_ENV=production\n');
    const saved = process.env.NODE_ENV;
    try {
      delete process.env.NODE_ENV;
      const refused = io(dir);
      expect(await runContributed('tool-echo', ['--env', 'development'], refused.cli)).toBe(1);
      expect(refused.out).toEqual([]);
      expect(refused.err.join('\n')).toMatch(/--env development disagrees with NODE_ENV=production/);
      const inline = io(dir);
      expect(await runContributed('tool-echo', ['--env=development'], inline.cli)).toBe(1);
      expect(inline.out).toEqual([]);
      delete process.env.NODE_ENV;
      const agreed = io(dir);
      expect(await runContributed('tool-echo', ['--env', 'production'], agreed.cli)).toBe(0);
      expect(process.env.NODE_ENV).toBe('production');
    } finally {
      if (saved === undefined) delete process.env.NODE_ENV;
      else process.env.NODE_ENV = saved;
    }
  });

  it('lists contributed commands in help with their plugin', async () => {
    const t = io(project());
    await listCommands(t.cli);
    expect(t.out.join('\n')).toMatch(/Commands from this project's plugins:\n {2}tool-echo\s+print the arguments \(@acme\/tool\)/);
  });
});

describe('mega generate', () => {
  it("lists the kinds the project's plugins declare", async () => {
    const t = io(project());
    expect(await generateCommand([], t.cli)).toBe(0);
    expect(t.out.join('\n')).toMatch(/Kinds of this project:\n {2}widget\s+a widget module \(@acme\/tool\)/);
    const unknown = io(project());
    expect(await generateCommand(['gizmo', 'x'], unknown.cli)).toBe(2);
    expect(unknown.err).toEqual(['mega generate: unknown kind "gizmo"']);
    expect(unknown.out.join('\n')).toContain('More kinds come with plugins: controller (mega plugin add http)');
    expect(unknown.out.join('\n')).toContain('widget');
  });

  it('runs a generator with the project editor and its options', async () => {
    const dir = project();
    const t = io(dir);
    expect(await generateCommand(['widget', 'blue', '--color=navy'], t.cli)).toBe(0);
    expect(readFileSync(join(dir, 'widgets/blue.ts'), 'utf8')).toBe('export const blue = "navy";\n');
    expect(t.out.join('\n')).toContain('wrote widgets/blue.ts');
  });

  it('--dry-run shows the files and writes nothing; an edited file is left alone unless --force; a test comes with the file', async () => {
    const dir = project();
    const dry = io(dir);
    expect(await generateCommand(['widget', 'blue', '--dry-run', '--color', 'navy'], dry.cli)).toBe(0);
    expect(dry.out).toContain('  would create widgets/blue.ts');
    expect(dry.out).toContain('    | export const blue = "navy";');
    expect(dry.out).toContain('  would create test/widget-blue.test.ts');
    expect(existsSync(join(dir, 'widgets/blue.ts'))).toBe(false);
    expect(existsSync(join(dir, 'test'))).toBe(false);

    expect(await generateCommand(['widget', 'blue'], io(dir).cli)).toBe(0);
    // The widget generator writes no test of its own: one that loads the file and boots the project comes with it.
    const companion = readFileSync(join(dir, 'test/widget-blue.test.ts'), 'utf8');
    expect(companion).toContain("import * as generated from '../widgets/blue.js';");
    expect(companion).toContain('bootProject(');

    const same = io(dir);
    expect(await generateCommand(['widget', 'blue'], same.cli)).toBe(0);
    expect(same.out).toContain('  identical widgets/blue.ts');
    writeFileSync(join(dir, 'widgets/blue.ts'), 'export const blue = "mine";\n');
    const kept = io(dir);
    expect(await generateCommand(['widget', 'blue', '--color', 'red'], kept.cli)).toBe(1);
    expect(kept.out).toContain('  exists widgets/blue.ts (left as it is; --force overwrites it)');
    expect(kept.err.join('\n')).toContain('1 file existed and was left as it was: widgets/blue.ts');
    expect(readFileSync(join(dir, 'widgets/blue.ts'), 'utf8')).toBe('export const blue = "mine";\n');
    const forced = io(dir);
    expect(await generateCommand(['widget', 'blue', '--color', 'red', '--force'], forced.cli)).toBe(0);
    expect(forced.out).toContain('  overwrite widgets/blue.ts');
    expect(readFileSync(join(dir, 'widgets/blue.ts'), 'utf8')).toBe('export const blue = "red";\n');
  });

  it('a conflict writes nothing: no half-generated files or config edit next to the file it refused to overwrite', async () => {
    const dir = project();
    const config = readFileSync(join(dir, 'mega.config.ts'), 'utf8');
    mkdirSync(join(dir, 'test'));
    writeFileSync(join(dir, 'test/audit-log-plugin.test.ts'), '// my own test\n');
    const t = io(dir);
    expect(await generateCommand(['plugin', 'AuditLog'], t.cli)).toBe(1);
    expect(t.out).toContain('  exists test/audit-log-plugin.test.ts (left as it is; --force overwrites it)');
    expect(t.err.join('\n')).toContain('nothing was written');
    expect(existsSync(join(dir, 'plugins/audit-log.ts'))).toBe(false);
    expect(readFileSync(join(dir, 'mega.config.ts'), 'utf8')).toBe(config);
    expect(readFileSync(join(dir, 'test/audit-log-plugin.test.ts'), 'utf8')).toBe('// my own test\n');
    // --force writes them all.
    expect(await generateCommand(['plugin', 'AuditLog', '--force'], io(dir).cli)).toBe(0);
    expect(existsSync(join(dir, 'plugins/audit-log.ts'))).toBe(true);
    expect(readFileSync(join(dir, 'mega.config.ts'), 'utf8')).toContain('./plugins/audit-log.ts');
  });

  it('has the kernel kinds plugin (enabled in mega.config.ts) and test, and names the plugin of a missing kind', async () => {
    const dir = project();
    const t = io(dir);
    expect(await generateCommand(['plugin', 'AuditLog'], t.cli)).toBe(0);
    expect(t.out).toContain('  create plugins/audit-log.ts');
    expect(t.out).toContain('  create test/audit-log-plugin.test.ts');
    expect(t.out).toContain('  update mega.config.ts (plugins: ./plugins/audit-log.ts)');
    expect(readFileSync(join(dir, 'mega.config.ts'), 'utf8')).toBe(
      "export default { plugins: ['./plugins/tool.ts', './plugins/audit-log.ts'] };\n",
    );
    expect(readFileSync(join(dir, 'plugins/audit-log.ts'), 'utf8')).toContain(
      'auditLog: Type.Object({ enabled: Type.Boolean({ default: true }) }',
    );
    expect(await generateCommand(['test', 'checkout-flow'], io(dir).cli)).toBe(0);
    expect(existsSync(join(dir, 'test/checkout-flow.test.ts'))).toBe(true);
    const missing = io(dir);
    expect(await generateCommand(['channel', 'Room'], missing.cli)).toBe(2);
    expect(missing.err).toEqual(['mega generate: unknown kind "channel" in this project: it comes with @mega/ws (mega plugin add ws)']);
    const bad = io(dir);
    await expect(generateCommand(['plugin', '9lives'], bad.cli)).rejects.toMatchObject({ code: 'generate.invalid_name' });
  });

  it('says how to start outside a project', async () => {
    const t = io('/');
    expect(await generateCommand(['widget', 'x'], t.cli)).toBe(1);
    expect(t.err[0]).toMatch(/no mega.config.ts/);
    expect(existsSync('/widgets')).toBe(false);
  });
});
