import { hkdfSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PluginApi } from '@mega/kernel';
import { definePlugin, Secret, Type } from '@mega/kernel';
import { bootProject, buildPlugins, LEVELS, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadProject } from '../src/config.js';
import { loadKernel } from '../src/kernel.js';
import { createLogger } from '../src/logger.js';
import { definePlugin as defineSourcePlugin } from '../src/plugin.js';
import { ajv, validateConfig } from '../src/schema.js';

afterEach(() => stopAll());

/** Builds the project in `dir` without starting it, so a boot failure can be asserted. */
const built = async (dir: string) => (await bootProject(dir, { start: false })).kernel;

const GLOBAL = `import { defineConfig } from '@mega/kernel';\nexport default defineConfig({ server: { port: 0 } });\n`;

describe('config loading', () => {
  it('loads mega.config.ts and every app config without a build step', async () => {
    const dir = writeProject({
      'mega.config.ts': GLOBAL,
      'apps/web/app.config.ts': `export default { hosts: ['web.test'] as string[] };\n`,
      'apps/admin/app.config.ts': `const hosts: string[] = ['admin.test'];\nexport default { hosts };\n`,
      'apps/notes/README.md': 'not an app: no app.config',
    });
    const project = await loadProject(dir);
    expect(project.apps.map((a) => a.name)).toEqual(['admin', 'web']);
    expect(project.apps[1]?.config.hosts).toEqual(['web.test']);
    expect((await loadProject(dir, { only: ['web'] })).apps.map((a) => a.name)).toEqual(['web']);
    await expect(loadProject(dir, { only: ['nope'] })).rejects.toMatchObject({ code: 'app.not_found' });
  });

  it('treats app.config.ts beside mega.config.ts as a single-app project named after its package', async () => {
    const dir = writeProject({ 'mega.config.ts': GLOBAL, 'app.config.ts': 'export default {};\n' });
    const project = await loadProject(dir);
    expect(project.apps).toEqual([{ name: 'mega-test-project', dir, config: {}, file: join(dir, 'app.config.ts') }]);
    const both = writeProject({ 'mega.config.ts': `export default { apps: ['x'] };\n`, 'app.config.ts': 'export default {};\n' });
    await expect(loadProject(both)).rejects.toMatchObject({ code: 'config.invalid', details: { errors: [{ path: '/apps' }] } });
  });

  it('reports a syntax error with file and line', async () => {
    const dir = writeProject({ 'mega.config.ts': `export default {\n  server: {\n    port: : 3000\n  }\n};\n` });
    const error = await loadProject(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.syntax', details: { line: 3 } });
    expect((error as Error).message).toMatch(/mega\.config\.ts:3/);
  });

  it('reports a syntax error in an app config with that file', async () => {
    const dir = writeProject({ 'mega.config.ts': GLOBAL, 'apps/web/app.config.ts': `export default { hosts: [ };\n` });
    const error = await loadProject(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.syntax' });
    expect((error as { details: { file: string } }).details.file).toMatch(/apps\/web\/app\.config\.ts$/);
  });

  it('rejects wrong types with every error path and the file', async () => {
    // `apps` decides which files load, so the loader checks it; every other key is checked at boot.
    const apps = writeProject({ 'mega.config.ts': `export default { apps: 'web' };\n` });
    await expect(loadProject(apps)).rejects.toMatchObject({
      code: 'config.invalid',
      details: { file: 'mega.config.ts', errors: [{ path: '/apps' }] },
    });
    const dir = writeProject({
      'mega.config.ts': `export default { server: { port: 'eighty', host: 1 }, logger: { level: 'loud' } };\n`,
    });
    const error = await (await built(dir)).start().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.invalid', details: { file: 'mega.config.ts' } });
    const paths = (error as { details: { errors: Array<{ path: string }> } }).details.errors.map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['/server/port', '/server/host', '/logger/level']));
  });

  it('rejects a default export that is not an object', async () => {
    const dir = writeProject({ 'mega.config.ts': `export default 42;\n` });
    await expect(loadProject(dir)).rejects.toMatchObject({ code: 'config.invalid' });
    const empty = writeProject({ 'mega.config.ts': `export const x = 1;\n` });
    await expect(loadProject(empty)).rejects.toMatchObject({ code: 'config.invalid' });
  });

  it('enforces scope: app-only key in mega.config.ts', async () => {
    const dir = writeProject({ 'mega.config.ts': `export default { hosts: ['a.test'] };\n` });
    await expect((await built(dir)).start()).rejects.toMatchObject({
      code: 'config.scope_violation',
      details: { key: 'hosts', file: 'mega.config.ts', belongsIn: 'apps/<name>/app.config.ts' },
    });
  });

  it('enforces scope: global-only key in an app config', async () => {
    const dir = writeProject({ 'mega.config.ts': GLOBAL, 'apps/web/app.config.ts': `export default { plugins: ['@mega/http'] };\n` });
    const error = await (await built(dir)).start().catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'config.scope_violation',
      details: { key: 'plugins', file: expect.stringMatching(/apps\/web\/app\.config\.ts$/), belongsIn: 'mega.config.ts' },
    });
    expect((error as Error).message).toMatch(
      /^"plugins" \(@mega\/kernel\) is not allowed in \S*apps\/web\/app\.config\.ts; it belongs in mega\.config\.ts$/,
    );
  });

  it('fails clearly when an app listed in apps does not exist, and when no config exists', async () => {
    const dir = writeProject({ 'mega.config.ts': `export default { apps: ['ghost'] };\n` });
    await expect(loadProject(dir)).rejects.toMatchObject({ code: 'config.invalid' });
    const none = writeProject({ 'README.md': 'x' });
    await expect(loadProject(none)).rejects.toMatchObject({ code: 'config.not_found' });
  });

  it('loads .env without overriding variables already set', async () => {
    process.env.MEGA_TEST_KEEP = 'from-env';
    const dir = writeProject({
      'mega.config.ts': `export default { server: { port: Number(process.env.MEGA_TEST_PORT) } };\n`,
      '.env': 'MEGA_TEST_PORT=4567\nMEGA_TEST_KEEP=from-file\n',
    });
    const project = await loadProject(dir);
    expect(project.config.server?.port).toBe(4567);
    expect(process.env.MEGA_TEST_KEEP).toBe('from-env');
  });

  it('names a plugin that is not installed and how to add it', async () => {
    const dir = writeProject({ 'mega.config.ts': `export default { plugins: ['@mega/does-not-exist'] };\n` });
    await expect(loadKernel({ dir, logger: createLogger({ level: 'silent' }) })).rejects.toMatchObject({
      code: 'plugin.not_installed',
      message: expect.stringContaining('mega plugin add @mega/does-not-exist'),
    });
  });

  it('survives garbage config files without crashing the loader', async () => {
    const garbage = ['\u0000\u0001\u0002', '}}}{{{', 'export default (', '\uFFFF'.repeat(100), 'export default { a: 1 } }'];
    for (const content of garbage) {
      const dir = writeProject({ 'mega.config.ts': content });
      const error = await loadProject(dir).catch((e: unknown) => e);
      expect(error, JSON.stringify(content)).toMatchObject({ code: expect.stringMatching(/^config\./) });
    }
  });
});

describe('secrets', () => {
  const ENV = 'MEGA_THING_SECRET_TEST';
  let api: PluginApi<{ thing: { secret?: string } }> | undefined;
  const thing = (spec: Partial<Parameters<typeof Secret>[0]> = {}) =>
    definePlugin({
      name: 'thing',
      version: '1.0.0',
      config: {
        app: Type.Object({
          thing: Type.Object(
            { secret: Type.Optional(Secret({ env: ENV, purpose: 'things', minBytes: 32, code: 'thing.secret_missing', ...spec })) },
            { default: {} },
          ),
        }),
      },
      setup(a) {
        api = a;
      },
    });
  const LONG = 'x'.repeat(32);
  const boot = async (appConfig: Record<string, unknown>, env = 'test', spec: Partial<Parameters<typeof Secret>[0]> = {}, dir?: string) => {
    const b = buildPlugins({ plugins: [thing(spec)], apps: { web: appConfig }, env, logLevel: 'warn', ...(dir ? { dir } : {}) });
    const error = await b.kernel.start().catch((e: unknown) => e);
    const secret = error ? undefined : api?.appConfig('web').thing.secret;
    await b.stop();
    return { error, secret, logs: b.logs };
  };
  afterEach(() => {
    delete process.env[ENV];
    delete process.env.MEGA_SECRET;
  });

  it('prefers the app config, then its variable, then MEGA_SECRET unless told not to share', async () => {
    process.env[ENV] = `env-${LONG}`;
    process.env.MEGA_SECRET = `shared-${LONG}`;
    expect((await boot({ thing: { secret: `file-${LONG}` } }, 'production')).secret).toBe(`file-${LONG}`);
    expect((await boot({}, 'production')).secret).toBe(`env-${LONG}`);
    delete process.env[ENV];
    // MEGA_SECRET itself is never handed out: each purpose gets its own HKDF key of it (issue 15).
    const derived = (await boot({}, 'production')).secret;
    expect(derived).toBe(Buffer.from(hkdfSync('sha256', `shared-${LONG}`, 'mega', `mega.secret.v1:${ENV}`, 32)).toString('base64url'));
    expect((await boot({}, 'production')).secret).toBe(derived);
    const unshared = await boot({}, 'production', { shared: false });
    expect(unshared.error).toMatchObject({ code: 'thing.secret_missing', message: expect.stringContaining(ENV) });
  });

  it('fails boot in production; development warns and uses a per-project secret that restarts and workers share', async () => {
    const missing = await boot({}, 'production');
    expect(missing.error).toMatchObject({ code: 'thing.secret_missing', message: expect.stringContaining('app web') });
    const a = await boot({}, 'development');
    const b = await boot({}, 'development');
    expect(a.secret).not.toBe(b.secret); // two projects
    const dir = mkdtempSync(join(tmpdir(), 'mega-devsecret-'));
    const first = await boot({}, 'development', {}, dir);
    const again = await boot({}, 'development', {}, dir);
    expect(again.secret).toBe(first.secret); // one project, two boots (a restart, or two workers)
    expect(readFileSync(join(dir, '.mega/dev-secret'), 'utf8')).not.toBe(first.secret); // derived, not the file itself
    expect(Buffer.byteLength(a.secret ?? '')).toBeGreaterThanOrEqual(32);
    const warnings = a.logs.filter((l) => l.level === LEVELS.warn);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toContain('thing.secret');
    expect((await boot({}, 'production', { optional: true })).error).toBeUndefined();
  });

  it('enforces the minimum length on a secret from the file and from the environment alike', async () => {
    const fromFile = await boot({ thing: { secret: 'short' } }, 'development');
    expect(fromFile.error).toMatchObject({ code: 'thing.secret_missing', message: expect.stringContaining('at least 32 bytes') });
    expect((fromFile.error as Error).message).toContain('thing.secret in apps/web/app.config.ts');
    expect((fromFile.error as Error).message).not.toContain('short');
    process.env[ENV] = 'too-short-from-env';
    const fromEnv = await boot({}, 'development');
    expect(fromEnv.error).toMatchObject({ code: 'thing.secret_missing', message: expect.stringContaining('at least 32 bytes') });
    expect((fromEnv.error as Error).message).toContain(ENV);
    expect((fromEnv.error as Error).message).not.toContain('too-short-from-env');
  });

  it('B11: production refuses any secret under 32 bytes from the file, its variable or MEGA_SECRET; development warns; an empty one names its minimum', async () => {
    const lenient = { minBytes: 16 };
    process.env.MEGA_SECRET = 'x';
    const tiny = await boot({}, 'production', lenient);
    expect(tiny.error).toMatchObject({
      code: 'thing.secret_missing',
      message: expect.stringMatching(/from MEGA_SECRET\) must be at least 32 bytes/),
    });
    process.env.MEGA_SECRET = 'twenty-bytes-secret!';
    expect((await boot({}, 'production', lenient)).error).toMatchObject({ message: expect.stringContaining('at least 32 bytes') });
    const dev = await boot({}, 'development', lenient);
    expect([dev.error, dev.secret]).toEqual([
      undefined,
      Buffer.from(hkdfSync('sha256', 'twenty-bytes-secret!', 'mega', `mega.secret.v1:${ENV}`, 32)).toString('base64url'),
    ]);
    expect(dev.logs.some((l) => l.level === LEVELS.warn && String(l.msg).includes('shorter than 32 bytes: production refuses it'))).toBe(
      true,
    );
    delete process.env.MEGA_SECRET;
    process.env[ENV] = 'twenty-bytes-secret!';
    expect((await boot({}, 'production', lenient)).error).toMatchObject({
      message: expect.stringContaining(`from ${ENV}) must be at least 32 bytes`),
    });
    delete process.env[ENV];
    expect((await boot({ thing: { secret: 'twenty-bytes-secret!' } }, 'production', lenient)).error).toMatchObject({
      message: expect.stringContaining('at least 32 bytes'),
    });
    expect((await boot({}, 'production', lenient)).error).toMatchObject({ code: 'thing.secret_missing' });
    process.env.MEGA_SECRET = '';
    for (const [env, spec, min] of [
      ['production', { minBytes: undefined }, 32],
      ['development', { minBytes: undefined }, 16],
    ] as const) {
      const empty = await boot({}, env, spec);
      expect(empty.error).toMatchObject({ code: 'thing.secret_missing', message: expect.stringContaining(`at least ${min} bytes`) });
      expect((empty.error as Error).message).not.toContain('undefined');
    }
    process.env.MEGA_SECRET = 'x'.repeat(32);
    expect((await boot({}, 'production', lenient)).error).toBeUndefined();
  });
});

describe('config validators', () => {
  it('are kept as code in node_modules/.cache/mega; loaded from there they check, report and fill defaults as compiled ones', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mega-validators-'));
    mkdirSync(join(dir, 'node_modules'));
    // A new schema object each run: the in-memory map misses, so the second run can only use the file.
    const probe = () =>
      Type.Object({
        probe: Type.Object({ n: Type.Integer({ minimum: 1, default: 3 }), tag: Type.String({ default: 't' }) }, { default: {} }),
      });
    const run = (config: Record<string, unknown>) =>
      validateConfig({
        dir,
        plugins: [defineSourcePlugin({ name: 'probe', version: '1.0.0', config: { global: probe() }, setup() {} })],
        config,
        apps: [],
        configFile: 'mega.config.ts',
        env: 'test',
        log: createLogger({ level: 'silent' }),
      });
    const compile = vi.spyOn(ajv, 'compile');
    try {
      const first = run({ probe: { n: 0 } });
      expect(compile).toHaveBeenCalled();
      const cache = join(dir, 'node_modules/.cache/mega');
      expect(readdirSync(cache).filter((f) => readFileSync(join(cache, f), 'utf8').includes('"probe"'))).toHaveLength(1);
      compile.mockClear();
      const second = run({ probe: { n: 0 } });
      expect(compile).not.toHaveBeenCalled();
      expect(second.problems.map((p) => p.message)).toEqual(['invalid configuration in mega.config.ts: /probe/n must be >= 1']);
      expect(second.problems.map((p) => p.message)).toEqual(first.problems.map((p) => p.message));
      expect(run({}).global.get('probe')).toEqual({ probe: { n: 3, tag: 't' } });
      expect(compile).not.toHaveBeenCalled();
      // A corrupt (truncated) file is a miss: compiled again, and replaced by a whole one.
      const [file] = readdirSync(cache).filter((f) => readFileSync(join(cache, f), 'utf8').includes('"probe"'));
      const whole = readFileSync(join(cache, file as string), 'utf8');
      writeFileSync(join(cache, file as string), whole.slice(0, whole.length / 2));
      expect(run({ probe: { n: 0 } }).problems).toHaveLength(1);
      expect(compile).toHaveBeenCalledTimes(1);
      expect(readFileSync(join(cache, file as string), 'utf8')).toHaveLength(whole.length);
      compile.mockClear();
      expect(run({ probe: { n: 0 } }).problems).toHaveLength(1);
      expect(compile).not.toHaveBeenCalled();
    } finally {
      compile.mockRestore();
    }
  });
});
