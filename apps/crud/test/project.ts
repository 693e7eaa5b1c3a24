/** A copy of apps/crud in a temporary directory (its own .mega state), with the checkout's node_modules. */
import { cpSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REPO = join(import.meta.dirname, '../../..');
export const APP = join(REPO, 'apps/crud');

const ENTRIES = [
  'mega.config.ts',
  'app.config.ts',
  'package.json',
  'models',
  'migrations',
  'routes',
  'controllers',
  'channels',
  'jobs',
  'schedules',
  'lib',
  'public',
];

export function copyApp(prefix = 'mega-crud-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const entry of ENTRIES) cpSync(join(APP, entry), join(dir, entry), { recursive: true });
  cpSync(join(APP, '.mega', 'journal'), join(dir, '.mega', 'journal'), { recursive: true });
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

/** Fixed test secrets (development would generate them under .mega/). */
export const SECRETS = {
  MEGA_ASP_SECRET: 'crud-test-asp-master-secret-0123456789abcdef',
  MEGA_SESSION_SECRET: 'crud-test-session-secret-0123456789abcdef',
  MEGA_SECURITY_SECRET: 'crud-test-security-secret-0123456789abcdef',
};
