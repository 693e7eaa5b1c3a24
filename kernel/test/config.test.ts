import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeProject } from '../../scripts/test/project.js';
import { OpStats } from '../src/adapters.js';
import { loadProject, resolveAppSecret } from '../src/config.js';
import { loadKernel } from '../src/kernel.js';
import { createLogger } from '../src/logger.js';

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
    const dir = writeProject({
      'mega.config.ts': `export default { server: { port: 'eighty', host: 1 }, logger: { level: 'loud' }, apps: 'web' };\n`,
    });
    const error = await loadProject(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'config.invalid', details: { file: 'mega.config.ts' } });
    const paths = (error as { details: { errors: Array<{ path: string }> } }).details.errors.map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['/server/port', '/server/host', '/logger/level', '/apps']));
  });

  it('rejects a default export that is not an object', async () => {
    const dir = writeProject({ 'mega.config.ts': `export default 42;\n` });
    await expect(loadProject(dir)).rejects.toMatchObject({ code: 'config.invalid' });
    const empty = writeProject({ 'mega.config.ts': `export const x = 1;\n` });
    await expect(loadProject(empty)).rejects.toMatchObject({ code: 'config.invalid' });
  });

  it('enforces scope: app-only key in mega.config.ts', async () => {
    const dir = writeProject({ 'mega.config.ts': `export default { hosts: ['a.test'] };\n` });
    await expect(loadProject(dir)).rejects.toMatchObject({
      code: 'config.scope_violation',
      details: { key: 'hosts', file: 'mega.config.ts', belongsIn: 'apps/<name>/app.config.ts' },
    });
  });

  it('enforces scope: global-only key in an app config', async () => {
    const dir = writeProject({ 'mega.config.ts': GLOBAL, 'apps/web/app.config.ts': `export default { plugins: ['@mega/http'] };\n` });
    const error = await loadProject(dir).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'config.scope_violation',
      details: { key: 'plugins', file: 'apps/web/app.config.ts', belongsIn: 'mega.config.ts' },
    });
    expect((error as Error).message).toBe('"plugins" is not allowed in apps/web/app.config.ts; it belongs in mega.config.ts');
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

describe('resolveAppSecret', () => {
  const spec = { configKey: 'thing.secret', envVar: 'MEGA_THING_SECRET_TEST', code: 'thing.secret_missing', purpose: 'things' };
  const kernel = (env: string) => {
    const warnings: string[] = [];
    return { env, warnings, log: { warn: (_o: object, msg: string) => void warnings.push(msg) } };
  };

  it('prefers the app config, then its variable, then MEGA_SECRET unless told not to share', () => {
    const k = kernel('production');
    process.env.MEGA_THING_SECRET_TEST = 'from-env';
    process.env.MEGA_SECRET = 'shared';
    try {
      expect(resolveAppSecret(k, 'web', 'from-config', spec)).toBe('from-config');
      expect(resolveAppSecret(k, 'web', undefined, spec)).toBe('from-env');
      delete process.env.MEGA_THING_SECRET_TEST;
      expect(resolveAppSecret(k, 'web', undefined, spec)).toBe('shared');
      expect(() => resolveAppSecret(k, 'web', undefined, { ...spec, shared: false })).toThrow(
        expect.objectContaining({ code: 'thing.secret_missing', message: expect.stringContaining('MEGA_THING_SECRET_TEST') }),
      );
    } finally {
      delete process.env.MEGA_THING_SECRET_TEST;
      delete process.env.MEGA_SECRET;
    }
  });

  it('fails boot in production, warns and makes a random one in development, and refuses short secrets anywhere', () => {
    expect(() => resolveAppSecret(kernel('production'), 'web', undefined, spec)).toThrow(
      expect.objectContaining({ code: 'thing.secret_missing', message: expect.stringContaining('apps/web/app.config.ts') }),
    );
    const dev = kernel('development');
    const a = resolveAppSecret(dev, 'web', undefined, spec);
    const b = resolveAppSecret(dev, 'web', undefined, spec);
    expect(a).not.toBe(b);
    expect(Buffer.byteLength(a)).toBeGreaterThanOrEqual(32);
    expect(dev.warnings).toHaveLength(2);
    expect(dev.warnings[0]).toContain('thing.secret');
    expect(() => resolveAppSecret(dev, 'web', 'short', { ...spec, minBytes: 32 })).toThrow(
      expect.objectContaining({ code: 'thing.secret_missing', message: expect.stringContaining('at least 32 bytes') }),
    );
  });
});

describe('OpStats.time', () => {
  it('records latency and failures and rethrows the error unchanged', async () => {
    const stats = new OpStats();
    expect(await stats.time(async () => 7)).toBe(7);
    const boom = new Error('boom');
    await expect(stats.time(async () => Promise.reject(boom))).rejects.toBe(boom);
    const snap = stats.snapshot();
    expect([snap.operations, snap.errors, snap.latency.count]).toEqual([2, 1, 2]);
  });
});
