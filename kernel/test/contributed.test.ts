import { existsSync, readFileSync } from 'node:fs';
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
    expect(t.out.join('\n')).toMatch(/Kinds from this project's plugins:\n {2}widget\s+a widget module \(@acme\/tool\)/);
    const unknown = io(project());
    expect(await generateCommand(['gizmo', 'x'], unknown.cli)).toBe(2);
    expect(unknown.err).toEqual(['mega generate: unknown kind "gizmo"']);
    expect(unknown.out.join('\n')).toContain('widget');
  });

  it('runs a generator with the project editor and its options', async () => {
    const dir = project();
    const t = io(dir);
    expect(await generateCommand(['widget', 'blue', '--color=navy'], t.cli)).toBe(0);
    expect(readFileSync(join(dir, 'widgets/blue.ts'), 'utf8')).toBe('export const blue = "navy";\n');
    expect(t.out.join('\n')).toContain('wrote widgets/blue.ts');
  });

  it('says how to start outside a project', async () => {
    const t = io('/');
    expect(await generateCommand(['widget', 'x'], t.cli)).toBe(1);
    expect(t.err[0]).toMatch(/no mega.config.ts/);
    expect(existsSync('/widgets')).toBe(false);
  });
});
