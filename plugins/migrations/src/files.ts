/**
 * Where an app's migrations and journal live, migration names and ids, and loading migration files
 * (with their checksums) in order.
 *
 *   <app>/migrations/<ts>-<name>.ts                 the app's default db
 *   <app>/migrations/<alias>/<ts>-<name>.ts         any other `services.dbs` alias
 *   <app>/.mega/journal/snapshot.json               the schema after the newest migration (default db)
 *   <app>/.mega/journal/history/<ts>-<name>.json    the schema after each migration
 *   <app>/.mega/journal/<alias>/...                 the same for another alias
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ConfigError, ValidationError } from '@mega/kernel';
import { createJiti } from 'jiti';
import type { Migration } from './types.js';

// A fresh evaluation each time: an edited file must run as it is now (drift is judged on its bytes).
const jiti = createJiti(import.meta.url, { interopDefault: false, moduleCache: false });

export const MIGRATION_FILE = /^(\d{14})-([a-z][a-z0-9]*(?:-[a-z0-9]+)*)\.(ts|mts|js|mjs)$/;
const CODE_FILE = /^(?!.*\.(d|test|spec)\.[mc]?[jt]s$).*\.(ts|mts|js|mjs)$/;

export interface Layout {
  app: string;
  alias: string;
  /** The app's default alias uses the top-level folders. */
  isDefault: boolean;
  migrationsDir: string;
  journalDir: string;
}

export interface LayoutOptions {
  /** `migrations.dir` (relative to the app). */
  dir: string;
  /** `migrations.journalDir` (relative to the app). */
  journalDir: string;
}

const ALIAS = /^[A-Za-z0-9_-]+$/;

export function layoutOf(app: { name: string; dir: string }, alias: string, defaultAlias: string, options: LayoutOptions): Layout {
  const isDefault = alias === defaultAlias;
  if (!isDefault && (!ALIAS.test(alias) || alias === 'history')) {
    throw new ConfigError(
      'migrations.invalid_alias',
      `db alias "${alias}" cannot name a migrations folder: use letters, digits, _ or - (and not "history")`,
      {
        details: { alias },
      },
    );
  }
  return {
    app: app.name,
    alias,
    isDefault,
    migrationsDir: isDefault ? join(app.dir, options.dir) : join(app.dir, options.dir, alias),
    journalDir: isDefault ? join(app.dir, options.journalDir) : join(app.dir, options.journalDir, alias),
  };
}

/** The aliases that have a migrations folder of their own under the app's (subfolders holding migration files). */
export function aliasFolders(appDir: string, dir: string): string[] {
  const root = join(appDir, dir);
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && ALIAS.test(e.name) && readdirSync(join(root, e.name)).some((f) => MIGRATION_FILE.test(f)))
    .map((e) => e.name);
}

/**
 * `AddAuthToUsers`, `add_auth_to_users`, `add auth to users` -> `add-auth-to-users`. Refused
 * (`migrations.invalid_name`): empty, not starting with a letter, path characters, over 80 chars.
 */
export function migrationSlug(raw: string): string {
  const bad = (why: string) =>
    new ValidationError('migrations.invalid_name', `"${raw}" is not a usable migration name: ${why} (e.g. add-auth-to-users)`, {
      details: { name: raw },
    });
  if (typeof raw !== 'string' || !raw.trim()) throw bad('it is empty');
  if (/[/\\.]/.test(raw)) throw bad('use letters, digits, spaces, - or _ only');
  if (!/^[A-Za-z0-9_\- ]+$/.test(raw)) throw bad('use letters, digits, spaces, - or _ only');
  const words = raw
    .split(/[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
  if (!/^[a-z]/.test(words[0] ?? '')) throw bad('start with a letter');
  const slug = words.join('-');
  if (slug.length > 80) throw bad('keep it under 80 characters');
  return slug;
}

/** `YYYYMMDDHHMMSS` in UTC, strictly after `after` (two migrations generated within one second stay ordered). */
export function timestampFor(date: Date, after?: string): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const ts = (d: Date) =>
    `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
  let out = ts(date);
  if (after && out <= after) {
    const [y, mo, d, h, mi, s] = [0, 4, 6, 8, 10, 12].map((i, k) => Number(after.slice(i, k === 0 ? 4 : i + 2))) as number[];
    out = ts(new Date(Date.UTC(y as number, (mo as number) - 1, d, h, mi, (s as number) + 1)));
  }
  return out;
}

export interface MigrationFile {
  /** `20260101120000-create-users` */
  id: string;
  file: string;
  checksum: string;
}

export interface LoadedMigration extends MigrationFile {
  migration: Migration;
}

export const checksumOf = (text: string) => createHash('sha256').update(text.replace(/\r\n/g, '\n')).digest('hex');

/**
 * The migration files of a folder in id order, with checksums (not imported). A code file whose
 * name does not follow `<14 digits>-<kebab-name>.ts` is refused (`migrations.invalid_file_name`):
 * it would never run, silently.
 */
export function listMigrations(dir: string, projectDir: string): MigrationFile[] {
  if (!existsSync(dir)) return [];
  const out: MigrationFile[] = [];
  const seen = new Map<string, string>();
  for (const name of readdirSync(dir).sort()) {
    const file = join(dir, name);
    if (!CODE_FILE.test(name) || !statSync(file).isFile()) continue;
    const m = MIGRATION_FILE.exec(name);
    if (!m) {
      throw new ConfigError(
        'migrations.invalid_file_name',
        `${relative(projectDir, file)} is not named <YYYYMMDDHHMMSS>-<kebab-name>.ts, so it would never run: rename it (mega migrate generate <name> writes one)`,
        { details: { file: relative(projectDir, file) } },
      );
    }
    const id = `${m[1]}-${m[2]}`;
    const dup = seen.get(id);
    if (dup) {
      throw new ConfigError('migrations.duplicate', `migration ${id} exists twice (${dup} and ${name})`, {
        details: { id, files: [dup, name] },
      });
    }
    seen.set(id, name);
    out.push({ id, file, checksum: checksumOf(readFileSync(file, 'utf8')) });
  }
  return out;
}

/** Imports one migration file; `migrations.load_failed` / `migrations.invalid_file` name it. */
export async function loadMigration(f: MigrationFile, projectDir: string): Promise<LoadedMigration> {
  const shown = relative(projectDir, f.file);
  let mod: { default?: unknown };
  try {
    mod = (await jiti.import(f.file)) as { default?: unknown };
  } catch (error) {
    throw new ConfigError(
      'migrations.load_failed',
      `migration ${shown} failed to load: ${(error as Error)?.message?.split('\n')[0] ?? String(error)}`,
      {
        details: { file: shown, id: f.id },
        cause: error,
      },
    );
  }
  const m = mod?.default as Partial<Migration> | undefined;
  if (typeof m !== 'object' || m === null || typeof m.up !== 'function' || typeof m.down !== 'function') {
    throw new ConfigError('migrations.invalid_file', `migration ${shown} must export default { up(ctx), down(ctx) }`, {
      details: { file: shown, id: f.id },
    });
  }
  return { ...f, migration: m as Migration };
}
