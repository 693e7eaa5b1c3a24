/**
 * `mega generate controller|route <Name> [--app <app>]`, each with a test that boots the project
 * and requests what it generated. Files go in the app's folder (the project root of a single-app
 * project, apps/<app>/ otherwise); tests go in the project's test/ folder, which `mega test` runs.
 */
import type { Generator, ProjectEditor } from '@mega/kernel';
import { ValidationError } from '@mega/kernel';

/** `user-profile`, `UserProfile`, `userProfile` -> { file: 'user-profile', cls: 'UserProfile' }. */
export function names(raw: string, suffix = 'Controller'): { file: string; cls: string } {
  const words = raw
    .replace(new RegExp(`${suffix}$`), '')
    .split(/[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
  if (words.length === 0 || !/^[a-z]/.test(words[0] as string)) {
    throw new ValidationError('generate.invalid_name', `"${raw}" is not a usable name: start with a letter (e.g. UserProfile)`);
  }
  return { file: words.join('-'), cls: words.map((w) => w[0]?.toUpperCase() + w.slice(1)).join('') };
}

/** The app option: `apps/<app>/` (checked like an app directory name) or the project root. */
function appBase(options: Record<string, string | boolean>): { base: string; app: string | undefined } {
  const app = typeof options.app === 'string' ? options.app : undefined;
  if (app !== undefined && !/^[a-z0-9][a-z0-9_-]*$/.test(app)) {
    throw new ValidationError('generate.invalid_app', `--app "${app}" is not an app directory name (apps/<name>)`);
  }
  return { base: app ? `apps/${app}/` : '', app };
}

/**
 * The top of a generated test: boots this project (only `app` when given) and a `send` that
 * requests it with the app's first host (a multi-app project routes by Host) and an Origin of that
 * same host (what @mega/security's CSRF check asks of JSON writes).
 */
export function testPreamble(app: string | undefined, extraImports = ''): string {
  return `import { fileURLToPath } from 'node:url';
import { type Booted, type InjectInit, bootProject, stopAll } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';${extraImports}

let booted: Booted;
let host: string | undefined;
beforeAll(async () => {
  booted = await bootProject(fileURLToPath(new URL('..', import.meta.url))${app ? `, { apps: ['${app}'] }` : ''});
  host = ${app ? `booted.kernel.apps.find((a) => a.name === '${app}')` : 'booted.kernel.apps[0]'}?.hosts[0];
});
afterAll(stopAll);

const send = (path: string, init: InjectInit = {}) =>
  booted.inject(path, { ...init, ...(host ? { host } : {}), headers: { origin: host ? \`http://\${host}\` : booted.url(''), ...init.headers } });
`;
}

async function write(project: ProjectEditor, path: string, content: string): Promise<void> {
  if (!(await project.writeFileIfMissing(path, content))) project.log(`${path} exists; left as it is`);
}

export const controllerGenerator: Generator = {
  summary: 'a controller class (controllers/<name>.ts), a route file mounting it (routes/<name>.ts) and its test',
  async run(name: string, project: ProjectEditor, options: Record<string, string | boolean>) {
    const { file, cls } = names(name);
    const { base, app } = appBase(options);
    await write(
      project,
      `${base}controllers/${file}.ts`,
      `import type { Handler } from '@mega/http';

// Controllers are static methods (req, reply, ctx); what they return is sent as { data }.
export class ${cls}Controller {
  static index: Handler = async (_req, _reply, ctx) => ({ controller: '${cls}', app: ctx.app.name });
}
`,
    );
    await write(
      project,
      `${base}routes/${file}.ts`,
      `import type { Router } from '@mega/http';
import { ${cls}Controller } from '../controllers/${file}.js';

export default (router: Router) => {
  router.http.get('/${file}', ${cls}Controller.index);
};
`,
    );
    await write(
      project,
      `test/${file}-controller.test.ts`,
      `${testPreamble(app)}
describe('${cls}Controller', () => {
  it('GET /${file} answers from ${cls}Controller.index inside the { data } envelope', async () => {
    const res = await send('/${file}');
    expect(res.status).toBe(200);
    expect(res.data).toEqual({ controller: '${cls}', app: ${app ? `'${app}'` : 'booted.kernel.apps[0]?.name'} });
  });
});
`,
    );
  },
};

export const routeGenerator: Generator = {
  summary: 'a route file with list/create/show handlers and JSON Schemas (routes/<name>.ts) and its test',
  async run(name, project, options) {
    const { file, cls } = names(name, 'Routes?');
    const { base, app } = appBase(options);
    const code = file.replace(/-/g, '_');
    await write(
      project,
      `${base}routes/${file}.ts`,
      `import type { Handler, Router } from '@mega/http';
import { NotFoundError } from '@mega/kernel';

// Kept in memory to start with: replace the Map with ctx.db() or a model when the data must last.
interface ${cls}Item {
  id: number;
  name: string;
}
const store = new Map<number, ${cls}Item>();
let nextId = 1;

const list${cls}: Handler = async () => [...store.values()];

const create${cls}: Handler = async (req, reply) => {
  const { name } = req.body as { name: string };
  const item: ${cls}Item = { id: nextId++, name };
  store.set(item.id, item);
  reply.code(201);
  return item;
};

const show${cls}: Handler = async (req) => {
  const { id } = req.params as { id: string };
  const item = store.get(Number(id));
  if (!item) throw new NotFoundError('${code}.not_found', \`no ${file} with id \${id}\`);
  return item;
};

export default (router: Router) => {
  router.http.get('/${file}', list${cls});
  // Bodies and params are checked against these JSON Schemas before the handler runs (400 otherwise).
  router.http.post('/${file}', create${cls}, {
    schema: {
      body: {
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: { name: { type: 'string', minLength: 1, maxLength: 200 } },
      },
    },
  });
  router.http.get('/${file}/:id', show${cls}, {
    schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]+$' } } } },
  });
};
`,
    );
    await write(
      project,
      `test/${file}-route.test.ts`,
      `${testPreamble(app)}
describe('/${file}', () => {
  it('creates, lists and shows items', async () => {
    const created = await send('/${file}', { method: 'POST', json: { name: 'first' } });
    expect(created.status).toBe(201);
    expect(created.data).toMatchObject({ name: 'first' });
    expect((await send('/${file}')).data).toContainEqual(created.data);
    expect((await send(\`/${file}/\${created.data.id}\`)).data).toEqual(created.data);
  });

  it('refuses a body that breaks the schema (400) and answers 404 for an unknown id', async () => {
    const bad = await send('/${file}', { method: 'POST', json: { name: '' } });
    expect([bad.status, bad.code]).toEqual([400, 'validation.failed']);
    const missing = await send('/${file}/999999');
    expect([missing.status, missing.code]).toEqual([404, '${code}.not_found']);
  });
});
`,
    );
  },
};
