import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { bootProject, stopAll, writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { names } from '../src/generators.js';

const run = promisify(execFile);
const MEGA = resolve(fileURLToPath(new URL('../../../kernel/bin/mega.js', import.meta.url)));

describe('mega generate controller (contributed by @mega/http)', () => {
  afterEach(stopAll);

  it('derives file and class names, refusing names that do not start with a letter', () => {
    expect(names('UserProfile')).toEqual({ file: 'user-profile', cls: 'UserProfile' });
    expect(names('order_items')).toEqual({ file: 'order-items', cls: 'OrderItems' });
    expect(names('BillingController')).toEqual({ file: 'billing', cls: 'Billing' });
    expect(() => names('9lives')).toThrow(expect.objectContaining({ code: 'generate.invalid_name' }));
  });

  it('writes a controller and its route file that the project then serves, and keeps existing files', async () => {
    const dir = writeProject({
      'mega.config.ts': "export default { plugins: ['@mega/http'], server: { host: '127.0.0.1' } };\n",
      'app.config.ts': 'export default {};\n',
    });
    const listed = await run(process.execPath, [MEGA, 'generate'], { cwd: dir });
    expect(listed.stdout).toMatch(/controller\s+a controller class .*\(@mega\/http\)/);

    const first = await run(process.execPath, [MEGA, 'generate', 'controller', 'UserProfile'], { cwd: dir });
    expect(first.stdout).toContain('create controllers/user-profile.ts');
    expect(first.stdout).toContain('create routes/user-profile.ts');
    const source = readFileSync(join(dir, 'controllers/user-profile.ts'), 'utf8');
    const again = await run(process.execPath, [MEGA, 'generate', 'controller', 'UserProfile'], { cwd: dir });
    expect(again.stdout).toContain('exists; left as it is');
    expect(readFileSync(join(dir, 'controllers/user-profile.ts'), 'utf8')).toBe(source);

    const booted = await bootProject(dir);
    const res = await booted.inject('/user-profile');
    expect([res.status, res.data]).toEqual([200, { controller: 'UserProfile', app: 'mega-test-project' }]);
  });

  it('writes into apps/<app>/ with --app in a multi-app project', async () => {
    const dir = writeProject({
      'mega.config.ts': "export default { plugins: ['@mega/http'] };\n",
      'apps/admin/app.config.ts': 'export default {};\n',
    });
    await run(process.execPath, [MEGA, 'generate', 'controller', 'reports', '--app', 'admin'], { cwd: dir });
    expect(existsSync(join(dir, 'apps/admin/controllers/reports.ts'))).toBe(true);
    expect(existsSync(join(dir, 'apps/admin/routes/reports.ts'))).toBe(true);
  });
});
