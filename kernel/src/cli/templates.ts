/**
 * What `mega new --template <name>` writes. Every template shares the project scaffolding (tsconfig
 * so ctx, sock and msg are typed in editors, vitest config, `.env` with one MEGA_SECRET, .gitignore,
 * README) and brings its own app files and a passing test. `api` is written from here; `chat` and
 * `crud` copy the sample apps of the Mega checkout (apps/chat, apps/crud), so the template is always
 * the sample that the checkout's own tests run.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

export const TEMPLATES = ['api', 'chat', 'crud'] as const;
export type TemplateName = (typeof TEMPLATES)[number];

export interface TemplateInput {
  name: string;
  template: TemplateName;
  /** The Mega checkout (for the sample-app templates and third-party versions). */
  checkout: string | undefined;
}

export interface Template {
  files: Record<string, string>;
  /** @mega packages the project depends on (besides the kernel). */
  megaDependencies: string[];
  /** Third-party dependencies of the app files (name -> range). */
  dependencies: Record<string, string>;
  /** What to try first, for the README and the "Next" lines. */
  tryIt: string[];
}

/** Third-party dev tools of every project; the checkout's own ranges win, so npm finds them in its cache. */
const DEV_TOOLS: Record<string, string> = { vitest: '^4.1.12', typescript: '~6.0.3', '@types/node': '^24.19.2' };

export function devTools(checkout: string | undefined): Record<string, string> {
  const root = readJson(checkout ? join(checkout, 'package.json') : undefined)?.devDependencies as Record<string, string> | undefined;
  return Object.fromEntries(Object.entries(DEV_TOOLS).map(([name, range]) => [name, root?.[name] ?? range]));
}

function readJson(file: string | undefined): Record<string, unknown> | undefined {
  if (!file) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

export function templateFor(input: TemplateInput): Template {
  if (input.template === 'api') return apiTemplate(input.name);
  return sampleTemplate(input);
}

/** The files every project gets, whatever its template. */
export function commonFiles(name: string, template: Template, templateName: TemplateName): Record<string, string> {
  return {
    'tsconfig.json': `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2023',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
        },
        include: ['**/*.ts'],
        exclude: ['node_modules', 'dist', '.mega'],
      },
      null,
      2,
    )}\n`,
    'vitest.config.ts': `import { defineConfig } from 'vitest/config';

// "mega test" (or "npx vitest") runs these. Tests boot the project in process with @mega/testing;
// one file at a time, so an embedded database (PGlite under .mega/) has one owner at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'apps/*/test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
`,
    '.env': `# Loaded by mega start, mega console, mega test and the tests' bootProject. Keep it out of version control.
# The one project secret: sessions, CSRF tokens and ASP each derive their own key from it (HKDF), so
# restarts, --watch and --workers agree. In production set it (32 bytes or more) in the environment.
MEGA_SECRET=${randomBytes(32).toString('base64url')}
# NODE_ENV=production
`,
    '.gitignore': 'node_modules/\n.mega/*\n!.mega/journal/\n.env\ndist/\ncoverage/\n',
    'README.md': readme(name, template, templateName),
  };
}

function readme(name: string, template: Template, templateName: TemplateName): string {
  return `# ${name}

A Mega project (template \`${templateName}\`): TypeScript, real-time, every feature a plugin.

## Run it

\`\`\`sh
npx mega start            # http://localhost:3000 (npm start)
npx mega start --watch    # restarts on every edit (npm run dev)
npx mega test             # the tests in test/ with vitest and @mega/testing (npm test)
npx mega console          # a REPL with the project booted: getApp(), app.db(), ctx()
npx mega routes           # every route, its handler, middleware, and plugin routes
\`\`\`

Try: ${template.tryIt.map((t) => `\`${t}\``).join(', ')}.

## Layout

| path | what |
|---|---|
| \`mega.config.ts\` | global settings: \`plugins\`, \`server\`, \`services\` |
| \`app.config.ts\` | this app's settings (a single-app project: any Host) |
| \`routes/*.ts\` | route files: \`router.http.get(path, handler)\`, \`router.ws(path, Channel)\` |
| \`controllers/\` | handlers \`(req, reply, ctx)\`; what they return is sent as \`{ data }\` |
| \`test/\` | tests (vitest); \`bootProject\` from @mega/testing boots this project in process |
| \`.env\` | \`MEGA_SECRET\` and other environment; never commit it |

## Grow it

\`\`\`sh
npx mega generate                          # the kinds: controller, route, channel, job, plugin, test, ...
npx mega generate controller Users         # controllers/users.ts + routes/users.ts + test/users-controller.test.ts
npx mega generate channel Room --dry-run   # shows the files, writes nothing
npx mega plugin add ws-presence            # any plugin of: npx mega plugin list
npx mega doctor                            # Node, versions, native codec, services, config
\`\`\`

Generators never overwrite a file unless you pass \`--force\`.

## Where the @mega packages come from

They are not on a registry: \`mega new\` packed them from the Mega checkout named under \`"mega"\` in
package.json into tarballs (\`~/.cache/mega/packs\`), and \`overrides\` point every \`@mega/*\` package
there. \`mega plugin add\` repacks that checkout, so a \`git pull && npm run build\` there reaches this
project with the next plugin you add.
`;
}

function apiTemplate(name: string): Template {
  return {
    megaDependencies: ['@mega/http', '@mega/health'],
    dependencies: {},
    tryIt: [
      'curl localhost:3000/',
      `curl -X POST localhost:3000/echo -H 'content-type: application/json' -d '{"a":1}'`,
      'curl localhost:3000/health',
    ],
    files: {
      'mega.config.ts': `import { defineConfig } from '@mega/kernel';

// Global settings. Add plugins with "npx mega plugin add <name>" (e.g. security, session, ws-presence).
export default defineConfig({
  plugins: ['@mega/http', '@mega/health'],
  server: { port: 3000 },
});
`,
      'app.config.ts': `import { defineAppConfig } from '@mega/kernel';

// This app's settings; it sits beside mega.config.ts, so the project is one app on any Host.
export default defineAppConfig({});
`,
      'routes/index.ts': `import type { Router } from '@mega/http';
import { HomeController } from '../controllers/home.js';

export default (router: Router) => {
  router.http.get('/', HomeController.index);
  // The body is checked against this JSON Schema before the handler runs (a 400 validation.failed otherwise).
  router.http.post('/echo', HomeController.echo, { schema: { body: { type: 'object' } } });
};
`,
      'controllers/home.ts': `import type { Handler } from '@mega/http';

// Controllers are static methods (req, reply, ctx); what they return is sent as { data }.
export class HomeController {
  static index: Handler = async (_req, _reply, ctx) => ({ message: 'Hello from ${name}', app: ctx.app.name });

  static echo: Handler = async (req) => ({ echo: req.body });
}
`,
      'test/home.test.ts': `import { fileURLToPath } from 'node:url';
import { type Booted, bootProject, stopAll } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Boots this project in the test process (as mega start would, on a free port) and sends real requests.
let app: Booted;
beforeAll(async () => {
  app = await bootProject(fileURLToPath(new URL('..', import.meta.url)));
});
afterAll(stopAll);

describe('${name}', () => {
  it('GET / says hello inside the { data } envelope', async () => {
    const res = await app.inject('/');
    expect(res.status).toBe(200);
    expect(res.data).toEqual({ message: 'Hello from ${name}', app: '${name}' });
  });

  it('POST /echo answers its JSON body and refuses a body that breaks its schema', async () => {
    // A same-origin Origin, as a browser sends it: what @mega/security's CSRF check asks of JSON writes.
    const post = (json: unknown) => app.inject('/echo', { method: 'POST', json, headers: { origin: app.url('') } });
    expect((await post({ a: 1 })).data).toEqual({ echo: { a: 1 } });
    const bad = await post([1, 2]);
    expect([bad.status, bad.code]).toEqual([400, 'validation.failed']);
  });

  it('GET /health answers ok (@mega/health)', async () => {
    expect((await app.inject('/health')).data).toEqual({ status: 'ok' });
  });
});
`,
    },
  };
}

/** Entries of a sample app that are the repository's, not the project's. */
const SAMPLE_SKIP = new Set(['package.json', 'README.md', 'test', 'node_modules', 'dist', '.env', 'tsconfig.json']);

function listFiles(dir: string, root = dir): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    const rel = relative(root, path);
    if (dir === root && SAMPLE_SKIP.has(entry)) return [];
    // .mega/ is local state (PGlite data, sessions), except the migrations journal, which is source.
    if (rel === '.mega' || rel.startsWith(`.mega${sep}`)) {
      if (rel !== '.mega' && rel !== join('.mega', 'journal') && !rel.startsWith(join('.mega', 'journal') + sep)) return [];
    }
    return statSync(path).isDirectory() ? listFiles(path, root) : [rel];
  });
}

function sampleTemplate(input: TemplateInput): Template {
  const { checkout, template } = input;
  const source = checkout ? join(checkout, 'apps', template) : undefined;
  if (!source || !existsSync(join(source, 'mega.config.ts'))) {
    throw new Error(
      checkout
        ? `template "${template}" copies apps/${template} of the Mega checkout, and ${checkout} has none yet; use --template api`
        : `template "${template}" copies apps/${template} of the Mega checkout: run mega new from a checkout (npm run mega -- new <dir>)`,
    );
  }
  const pkg = readJson(join(source, 'package.json')) ?? {};
  const deps = (pkg.dependencies as Record<string, string> | undefined) ?? {};
  const files: Record<string, string> = {};
  for (const file of listFiles(source)) files[file] = readFileSync(join(source, file), 'utf8');
  const test = SAMPLE_TESTS[template];
  if (test) files[test.path] = test.source(input.name);
  return {
    files,
    megaDependencies: Object.keys(deps).filter((d) => d.startsWith('@mega/') && d !== '@mega/kernel'),
    dependencies: Object.fromEntries(Object.entries(deps).filter(([d]) => !d.startsWith('@mega/'))),
    tryIt: test?.tryIt ?? ['open http://localhost:3000/'],
  };
}

/** The test each sample template brings (the sample's own tests use the repository's harness). */
const SAMPLE_TESTS: Partial<Record<TemplateName, { path: string; tryIt: string[]; source: (name: string) => string }>> = {
  crud: {
    path: 'test/api.test.ts',
    tryIt: [
      `curl -c jar -b jar -X POST localhost:3000/api/users -H 'content-type: application/json' -d '{"email":"ada@example.com","name":"Ada","password":"correct horse"}'`,
      `curl -b jar 'localhost:3000/api/notes?limit=10'`,
    ],
    source: () => `import { fileURLToPath } from 'node:url';
import { type Booted, bootProject, stopAll } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Boots the project (PGlite under .mega/, migrations applied at boot outside production).
let app: Booted;
beforeAll(async () => {
  app = await bootProject(fileURLToPath(new URL('..', import.meta.url)));
});
afterAll(stopAll);

const cookieOf = (setCookie: string | string[] | undefined) =>
  ([] as string[])
    .concat(setCookie ?? [])
    .map((c) => c.split(';')[0])
    .join('; ');

describe('crud API', () => {
  it('signs up, writes a note, pages the notes, and refuses a taken email', async () => {
    const email = \`ada\${Date.now()}@example.com\`;
    const signup = await app.inject('/api/users', { method: 'POST', json: { email, name: 'Ada', password: 'correct horse' } });
    expect(signup.status).toBe(201);
    expect(signup.data).toMatchObject({ email, name: 'Ada' });
    expect(signup.data.password_hash).toBeUndefined();
    const cookie = cookieOf(signup.headers['set-cookie']);
    const note = await app.inject('/api/notes', { method: 'POST', json: { title: 'first', body: 'hello' }, headers: { cookie } });
    expect(note.status).toBe(201);
    const page = await app.inject('/api/notes?limit=10', { headers: { cookie } });
    expect(page.data.items.map((n: { title: string }) => n.title)).toContain('first');
    const taken = await app.inject('/api/users', { method: 'POST', json: { email, name: 'Ada', password: 'correct horse' } });
    expect([taken.status, taken.code]).toEqual([409, 'users.email_taken']);
  });

  it('refuses a body that breaks the model schema', async () => {
    const bad = await app.inject('/api/users', { method: 'POST', json: { email: 'x@example.com', name: 'n'.repeat(65), password: 'correct horse' } });
    expect([bad.status, bad.code]).toEqual([400, 'validation.failed']);
  });
});
`,
  },
  chat: {
    path: 'test/chat.test.ts',
    tryIt: ['open http://localhost:3000/ in two browsers, register two names and chat'],
    source: () => `import { fileURLToPath } from 'node:url';
import { AspClient } from '@mega/asp/client';
import { type Booted, bootProject, stopAll } from '@mega/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let app: Booted;
beforeAll(async () => {
  app = await bootProject(fileURLToPath(new URL('..', import.meta.url)));
});
afterAll(stopAll);

const cookieOf = (setCookie: string | string[] | undefined, name: string) =>
  ([] as string[]).concat(setCookie ?? []).find((c) => c.startsWith(\`\${name}=\`))?.split(';')[0] ?? '';

describe('chat', () => {
  it('registers through the CSRF-protected form, and the session chats over the encrypted /ws/chat', async () => {
    const home = await app.inject('/');
    const csrf = cookieOf(home.headers['set-cookie'], 'mega_csrf');
    const token = /name="_csrf" value="([^"]+)"/.exec(home.text)?.[1] ?? '';
    const name = \`ada\${Date.now() % 100000}\`;
    const headers = { cookie: csrf, 'content-type': 'application/x-www-form-urlencoded' };
    const forged = await app.inject('/register', { method: 'POST', headers, body: \`name=\${name}&password=correct-horse\` });
    expect([forged.status, forged.code]).toEqual([403, 'csrf.missing_token']);
    const form = new URLSearchParams({ _csrf: token, name, password: 'correct-horse' }).toString();
    const registered = await app.inject('/register', { method: 'POST', headers, body: form });
    expect(registered.status).toBe(303);
    const cookie = \`\${csrf}; \${cookieOf(registered.headers['set-cookie'], 'chat_sid')}\`;

    const me = await app.inject('/api/me', { headers: { cookie } });
    expect(me.data.user.name).toBe(name);
    // Every frame of /ws/chat is sealed with the session's ASP key, handed over HTTP only.
    const asp = await AspClient.create(me.data.keys.ws);
    const ws = await app.ws('/ws/chat', { headers: { cookie } });
    const history = JSON.parse(await asp.openFrame(String((await ws.next()).raw), '/ws/chat'));
    expect(history.type).toBe('chat.history');
    expect(history.payload.me.userName).toBe(name);
    ws.sendRaw(await asp.sealFrame(JSON.stringify({ type: 'chat.send', id: 'm1', payload: { text: 'hello' } }), '/ws/chat'));
    const seen = new Set<string>();
    while (!seen.has('chat.message') || !seen.has('chat.sent')) {
      seen.add(JSON.parse(await asp.openFrame(String((await ws.next()).raw), '/ws/chat')).type);
    }
  });

  it('refuses /ws/chat without a session', async () => {
    await expect(app.ws('/ws/chat')).rejects.toMatchObject({ status: 401 });
  });
});
`,
  },
};
