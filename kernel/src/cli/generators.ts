/**
 * The generator kinds of the kernel itself (`plugin`, `test`), and the test written beside a
 * plugin's generated file when that generator writes none of its own: the file's module loads and
 * the project boots with it, so every generated file is covered by `mega test` from the start.
 */
import { readFile } from 'node:fs/promises';
import { ValidationError } from '../errors.js';
import type { Generator, ProjectEditor } from '../plugin.js';
import { addPlugins, listedPlugins } from './plugin/config-edit.js';

/** `audit_log`, `AuditLog`, `audit-log` -> ['audit', 'log']; a name must start with a letter. */
export function words(raw: string, what: string, suffix?: RegExp): string[] {
  const list = (suffix ? raw.replace(suffix, '') : raw)
    .split(/[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
  if (!/^[a-z]/.test(list[0] ?? '')) {
    throw new ValidationError('generate.invalid_name', `"${raw}" is not a usable ${what} name: start with a letter (e.g. AuditLog)`);
  }
  return list;
}

const camel = (list: string[]) => list.map((w, i) => (i === 0 ? w : (w[0] as string).toUpperCase() + w.slice(1))).join('');

const ROOT = `fileURLToPath(new URL('..', import.meta.url))`;

/** The editor a kernel generator gets: a project editor that also lists a local plugin in mega.config.ts. */
export interface KernelProjectEditor extends ProjectEditor {
  /** Adds `entry` to `plugins` of mega.config.ts unless listed (keeps the file's layout). */
  addPlugin(entry: string): Promise<boolean>;
}

export function withAddPlugin(
  editor: ProjectEditor,
  configFile: string,
  rel: string,
  dryRun: boolean,
  write: (content: string) => void,
): KernelProjectEditor {
  return Object.assign(Object.create(editor) as ProjectEditor, {
    async addPlugin(entry: string) {
      const source = await readFile(configFile, 'utf8');
      if (listedPlugins(source, rel).includes(entry)) return false;
      const next = addPlugins(source, rel, [entry]);
      if (!dryRun) write(next);
      editor.log(`${dryRun ? 'would update' : 'update'} ${rel} (plugins: ${entry})`);
      return true;
    },
  });
}

const pluginSource = (name: string, key: string) => `import { definePlugin, type RouteDefinition, Type } from '@mega/kernel';

// This plugin's keys of mega.config.ts, declared once: the type, the defaults and the JSON Schema the
// kernel checks before any plugin runs (an unknown or mistyped key stops boot with its path).
const Config = Type.Object({
  ${key}: Type.Object({ enabled: Type.Boolean({ default: true }) }, { default: {} }),
});

export default definePlugin({
  name: '${name}',
  version: '0.1.0',
  kernel: '^0.2.0',
  config: { global: Config },
  setup(api, config) {
    let routes = 0;
    // 'route' runs once per route definition at registration (never per request): wrap or annotate routes here.
    api.tap('route', (route: RouteDefinition) => {
      routes++;
      return route;
    });
    // Other plugins reach this with api.use('${name}'); tests with booted.kernel.use('${name}').
    api.provide('${name}', { routes: () => routes });
    // Boot taps at stage 1000 run after every other plugin's, when every route file has been loaded.
    api.tap('boot', () => api.log.info({ routes, enabled: config.${key}.enabled }, '${name} ready'), { stage: 1000 });
    api.onShutdown(() => api.log.debug('${name} stopped'));
  },
});
`;

const pluginTest = (name: string, file: string) => `import { fileURLToPath } from 'node:url';
import { bootProject, stopAll } from '@mega/testing';
import { afterAll, describe, expect, it } from 'vitest';
import plugin from '../plugins/${file}.js';

afterAll(stopAll);

describe('plugin ${name}', () => {
  it('is enabled in mega.config.ts, sees every route through the route hook, and logs once booted', async () => {
    const booted = await bootProject(${ROOT});
    expect(booted.kernel.plugins.map((p) => p.name)).toContain(plugin.name);
    const routes = booted.kernel.has('http') ? booted.kernel.use<{ routes: readonly unknown[] }>('http').routes.length : 0;
    expect(booted.kernel.use<{ routes(): number }>('${name}').routes()).toBe(routes);
    expect(booted.findLogs('${name} ready')).toHaveLength(1);
  });
});
`;

export const pluginGenerator: Generator = {
  summary: 'a local plugin (plugins/<name>.ts) with a config schema and hook taps, enabled in mega.config.ts, and its test',
  async run(raw, project) {
    const list = words(raw, 'plugin', /Plugin$/);
    const file = list.join('-');
    const entry = `./plugins/${file}.ts`;
    if (!(await project.writeFileIfMissing(`plugins/${file}.ts`, pluginSource(file, camel(list))))) {
      project.log(`plugins/${file}.ts exists; left as it is`);
    }
    await project.writeFileIfMissing(`test/${file}-plugin.test.ts`, pluginTest(file, file));
    await (project as KernelProjectEditor).addPlugin?.(entry);
  },
};

export const testGenerator: Generator = {
  summary: 'a test file (test/<name>.test.ts) that boots the project with @mega/testing, to fill in',
  async run(raw, project) {
    const list = words(raw, 'test', /\.?test$/i);
    const file = list.join('-');
    await project.writeFileIfMissing(
      `test/${file}.test.ts`,
      `import { fileURLToPath } from 'node:url';
import { type Booted, bootProject, stopAll } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let booted: Booted;
beforeAll(async () => {
  // The project as mega start boots it, in this process on a free port; .env is loaded.
  booted = await bootProject(${ROOT});
});
afterAll(stopAll);

describe('${list.join(' ')}', () => {
  it('boots the project', async () => {
    expect(booted.kernel.state).toBe('running');
    // HTTP: const res = await booted.inject('/path', { method: 'POST', json: {} }); expect(res.data).toEqual(...)
    // WebSocket: const ws = await booted.ws('/ws/path'); expect((await ws.request('x.y', {})).payload).toEqual(...)
    // Logs: await booted.waitForLog('text');   Services: booted.kernel.use('name')
  });
});
`,
    );
  },
};

/** The test beside a generated file whose generator wrote none: the module loads, the project boots with it. */
export function companionTest(kind: string, name: string, file: string): { path: string; content: string } {
  const stem = file
    .replace(/\.(ts|mts|js|mjs)$/, '')
    .split('/')
    .pop() as string;
  const from = `../${file.replace(/\.(ts|mts)$/, '.js')}`;
  return {
    path: `test/${kind}-${stem}.test.ts`,
    content: `import { fileURLToPath } from 'node:url';
import { bootProject, stopAll } from '@mega/testing';
import { afterAll, describe, expect, it } from 'vitest';
import * as generated from '${from}';

afterAll(stopAll);

// Written by "mega generate ${kind} ${name}" (that generator writes no test of its own): the module
// loads and the project boots with it. Add tests of what it does.
describe('${file}', () => {
  it('loads, and the project boots with it', async () => {
    expect(Object.keys(generated).length).toBeGreaterThan(0);
    const booted = await bootProject(${ROOT});
    expect(booted.kernel.state).toBe('running');
  });
});
`,
  };
}
