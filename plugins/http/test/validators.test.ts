import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import { Ajv } from 'ajv';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cachedValidators } from '../src/validators.js';

// The project gets a node_modules of its own (holding only @mega), so its cache is its own.
const megaModules = join(dirname(fileURLToPath(import.meta.url)), '../../../node_modules/@mega');

const ROUTES = `export default (router: any) => {
  const ok = async (req: any) => ({ body: req.body, query: req.query, token: req.headers['x-token'] });
  router.http.post('/users', ok, {
    schema: {
      body: {
        type: 'object',
        required: ['email'],
        additionalProperties: false,
        properties: { email: { type: 'string', format: 'email' }, age: { type: 'integer', minimum: 0 }, role: { type: 'string', default: 'member' } },
      },
      query: { type: 'object', properties: { page: { type: 'integer' }, tags: { type: 'array', items: { type: 'string' } } } },
      headers: { type: 'object', required: ['X-Token'], properties: { 'X-Token': { type: 'string', minLength: 3 } } },
    },
  });
  // A response schema: Fastify's serializer compiler, loaded on demand, drops what it does not list.
  const shape = { type: 'object', properties: { data: { type: 'object', properties: { keep: { type: 'integer' } } } } };
  router.http.get('/shape', async () => ({ keep: 1, drop: 2 }), { schema: { response: { 200: shape } } });
  router.http.get('/items/:id', ok, { schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]+$' } } } } });
};
`;

function project(routes = ROUTES): string {
  const dir = writeProject(
    {
      'mega.config.ts': "export default { plugins: ['@mega/http'] };\n",
      'app.config.ts': 'export default {};\n',
      'routes/index.ts': routes,
    },
    { prefix: 'mega-http-v-', nodeModules: false },
  );
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(megaModules, join(dir, 'node_modules/@mega'));
  return dir;
}

/** Ajv compiles of route schemas (plain objects; config schemas are TypeBox's, with its symbols). */
const routeCompiles = (spy: { mock: { calls: unknown[][] } }) =>
  spy.mock.calls.filter(([schema]) => Object.getOwnPropertySymbols(schema as object).length === 0).length;

const cacheDir = (dir: string) => join(dir, 'node_modules/.cache/mega');
const routeFiles = (dir: string) => (existsSync(cacheDir(dir)) ? readdirSync(cacheDir(dir)).filter((f) => f.startsWith('route-')) : []);

/** Every answer the validators decide: accepted with coercion, defaults and removed keys, and each refusal. */
async function answers(dir: string) {
  const app = await bootProject(dir);
  const headers = { 'content-type': 'application/json', 'x-token': 'abcd' };
  const post = (body: unknown, extra: Record<string, string> = {}, url = '/users?page=2&tags=a') =>
    app.inject(url, { method: 'POST', headers: { ...headers, ...extra }, body: JSON.stringify(body) });
  const results = [
    await post({ email: 'a@b.example', age: 3, extra: 'dropped' }),
    await post({ email: 'not an email', age: -1 }),
    await post({ age: 'x' }),
    await post([1, 2]),
    await post({ email: 'a@b.example' }, { 'x-token': 'ab' }),
    await post({ email: 'a@b.example' }, {}, '/users?page=two'),
    await app.inject('/items/12'),
    await app.inject('/items/abc'),
    await app.inject('/shape'),
  ];
  await app.stop();
  return results.map((r) => ({ status: r.status, body: r.json as unknown }));
}

describe('route validators cached on disk', () => {
  afterEach(async () => {
    vi.restoreAllMocks();
    await stopAll();
  });

  it('a second boot restores every route validator from the cache and never compiles; answers are identical', async () => {
    const dir = project();
    const compile = vi.spyOn(Ajv.prototype, 'compile');
    const cold = await answers(dir);
    // body, querystring, headers of POST /users; params of GET /items/:id
    expect(routeCompiles(compile)).toBe(4);
    expect(routeFiles(dir)).toHaveLength(4);
    expect(cold[0]).toEqual({
      status: 200,
      body: { data: { body: { email: 'a@b.example', age: 3, role: 'member' }, query: { page: 2, tags: ['a'] }, token: 'abcd' } },
    });
    expect(cold.slice(1, 6).map((r) => r.status)).toEqual([400, 400, 400, 400, 400]);
    expect(cold[1]?.body).toMatchObject({ error: { code: 'validation.failed' } });
    expect(cold[7]?.status).toBe(400);
    expect(cold[8]).toEqual({ status: 200, body: { data: { keep: 1 } } });

    compile.mockClear();
    const warm = await answers(dir);
    // Not one Ajv compile in the whole boot (the kernel's config validators come from the same cache).
    expect(compile).not.toHaveBeenCalled();
    expect(warm).toEqual(cold);
  });

  it('a corrupt cache file is ignored, compiled again and rewritten', async () => {
    const dir = project();
    const cold = await answers(dir);
    const files = routeFiles(dir);
    const good = new Map(files.map((f) => [f, readFileSync(join(cacheDir(dir), f), 'utf8')]));
    const [syntax, notAFunction, truncated] = files;
    writeFileSync(join(cacheDir(dir), syntax as string), 'this is { not javascript');
    writeFileSync(join(cacheDir(dir), notAFunction as string), 'module.exports = 42;');
    writeFileSync(join(cacheDir(dir), truncated as string), (good.get(truncated as string) as string).slice(0, 100));

    const compile = vi.spyOn(Ajv.prototype, 'compile');
    expect(await answers(dir)).toEqual(cold);
    // The three broken files, and only them (the fourth and the config validators load from the cache).
    expect(compile).toHaveBeenCalledTimes(3);
    // Rewritten: the next boot loads all four again.
    compile.mockClear();
    expect(await answers(dir)).toEqual(cold);
    expect(compile).not.toHaveBeenCalled();
    // No temporary files left behind.
    expect(readdirSync(cacheDir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a bad route schema still fails boot with Fastify’s error, and nothing is cached for it', async () => {
    const dir = project(`export default (router: any) => {
  router.http.post('/bad', async () => ({}), { schema: { body: { type: 'object', properties: { n: { type: 'nope' } } } } });
};
`);
    await expect(bootProject(dir)).rejects.toThrow(/Failed building the validation schema for POST: \/bad/);
    expect(routeFiles(dir)).toEqual([]);
  });

  it('without a node_modules above the project, validators compile as before', () => {
    const compile = vi.spyOn(Ajv.prototype, 'compile');
    const build = cachedValidators('/')({}, { customOptions: { allErrors: true }, plugins: [] });
    for (let i = 0; i < 2; i++) {
      const validate = build({ schema: { type: 'object', required: ['a'] }, httpPart: 'body' });
      expect(validate({})).toBe(false);
      expect(validate({ a: 1 })).toBe(true);
    }
    expect(compile).toHaveBeenCalledTimes(2);
  });
});
