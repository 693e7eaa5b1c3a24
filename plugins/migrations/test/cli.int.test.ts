/**
 * `mega migrate` and `mega generate migration` through the real CLI (child processes, no TTY) on
 * SQLite: what generate writes (and refuses to), the journal, renames that must be said, bad names,
 * the progress lines of up/down/redo, status with drift and --verify, and the generated files
 * type-checking against @mega/migrations.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeProject } from '@mega/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { MEGA_BIN } from '../../../scripts/test/procs.js';
import type { TestDb } from './support.js';
import { freshDb, MODELS_V1, MODELS_V2, reconfigure } from './support.js';

const exec = promisify(execFile);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function mega(dir: string, ...args: string[]): Promise<Run> {
  try {
    const r = await exec(process.execPath, [MEGA_BIN, ...args], { cwd: dir, env: { ...process.env, NODE_ENV: 'test' } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const migrationFiles = (dir: string) =>
  existsSync(join(dir, 'migrations')) ? readdirSync(join(dir, 'migrations')).filter((f) => f.endsWith('.ts')) : [];

/** `tsc --noEmit` (strict) over the project's migration files: '' when they compile. */
async function typecheck(dir: string): Promise<string> {
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2023',
        noEmit: true,
        skipLibCheck: true,
        types: ['node'],
      },
      include: ['migrations/**/*.ts'],
    }),
  );
  const tsc = join(import.meta.dirname, '../../../node_modules/typescript/bin/tsc');
  return exec(process.execPath, [tsc, '-p', dir]).then(
    () => '',
    (e: { stdout: string }) => e.stdout,
  );
}

let db: TestDb | undefined;
afterEach(async () => {
  await db?.drop();
  db = undefined;
});

async function sqliteProject(files: Record<string, string>, migrations: Record<string, unknown> = { auto: false }) {
  const dir = writeProject({ 'app.config.ts': 'export default {};\n', ...files });
  db = await freshDb('sqlite', dir);
  reconfigure(dir, db, migrations);
  return dir;
}

describe('mega migrate generate', () => {
  it('writes the migration and the journal, says when there is nothing to do, and writes nothing then', async () => {
    const dir = await sqliteProject({ 'models/v1.ts': MODELS_V1 });
    const first = await mega(dir, 'migrate', 'generate', 'create-users');
    expect(first.code, first.stderr).toBe(0);
    const [file] = migrationFiles(dir);
    expect(file).toMatch(/^\d{14}-create-users\.ts$/);
    const id = (file as string).slice(0, -3);
    expect(first.stdout).toContain(`create migrations/${file}`);
    expect(first.stdout).toMatch(/ {4}create table users\n {4}create table notes\n/);
    const journal = JSON.parse(readFileSync(join(dir, '.mega/journal/snapshot.json'), 'utf8'));
    expect(journal).toMatchObject({
      version: 1,
      id,
      alias: 'primary',
      kind: 'sql',
      snapshot: { tables: { users: expect.any(Object), notes: expect.any(Object) } },
    });
    expect(existsSync(join(dir, `.mega/journal/history/${id}.json`))).toBe(true);

    const again = await mega(dir, 'migrate', 'generate', 'again');
    expect(again).toMatchObject({ code: 0, stdout: expect.stringContaining(`nothing to do, the models match the journal (${id})`) });
    expect(migrationFiles(dir)).toEqual([file]);
  });

  it('refuses bad names and writes nothing', async () => {
    const dir = await sqliteProject({ 'models/v1.ts': MODELS_V1 });
    for (const name of ['1st-migration', '../escape', 'a.b', 'drop;table', '']) {
      const r = await mega(dir, 'migrate', 'generate', name);
      if (name === '') expect(r.code).toBe(2);
      else expect(r, name).toMatchObject({ code: 1, stderr: expect.stringContaining('migrations.invalid_name') });
    }
    expect(migrationFiles(dir)).toEqual([]);
    expect(existsSync(join(dir, '.mega/journal'))).toBe(false);
  });

  it('never turns a likely rename into drop + add silently: --rename or --allow-destructive must say which', async () => {
    const dir = await sqliteProject({ 'models/v1.ts': MODELS_V1 });
    await mega(dir, 'migrate', 'generate', 'create-users');
    rmSync(join(dir, 'models/v1.ts'));
    writeFileSync(join(dir, 'models/v2.ts'), MODELS_V2);

    const refused = await mega(dir, 'migrate', 'generate', 'v2');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('migrations.rename_ambiguous');
    expect(refused.stderr).toContain('--rename users.name:full_name');
    expect(refused.stderr).toContain('--rename notes:posts');
    expect(migrationFiles(dir)).toHaveLength(1);

    const dropping = await mega(dir, 'migrate', 'generate', 'v2', '--allow-destructive', '--dry-run');
    expect(dropping.code, dropping.stderr).toBe(0);
    expect(dropping.stdout).toContain('[destructive] drop column users.name');
    expect(dropping.stdout).toContain('[destructive] drop table notes');
    expect(migrationFiles(dir)).toHaveLength(1);

    const renamed = await mega(dir, 'migrate', 'generate', 'v2', '--rename', 'users.name:full_name', '--rename', 'notes:posts');
    expect(renamed.code, renamed.stderr).toBe(0);
    const file = migrationFiles(dir).find((f) => f.endsWith('-v2.ts')) as string;
    const source = readFileSync(join(dir, 'migrations', file), 'utf8');
    expect(source).toContain(".renameColumn('name', 'full_name')");
    expect(source).toContain(".alterTable('notes').renameTo('posts')");
    expect(source).toContain('destructive: true');
    expect(source).toContain('// DESTRUCTIVE (needs --allow-destructive in production): drop column users.meta');

    const badRename = await mega(dir, 'migrate', 'generate', 'v3', '--rename', 'users.nope:full_name');
    expect(badRename).toMatchObject({ code: 1, stderr: expect.stringContaining('migrations.invalid_rename') });
  });

  it('asks about each likely rename on a terminal (script(1) gives the CLI a pseudo-terminal)', async () => {
    const dir = await sqliteProject({ 'models/v1.ts': MODELS_V1 });
    await mega(dir, 'migrate', 'generate', 'create-users');
    rmSync(join(dir, 'models/v1.ts'));
    writeFileSync(join(dir, 'models/v2.ts'), MODELS_V2);
    const onTty = async (name: string, typed: string) => {
      const run = exec('script', ['-qec', `${process.execPath} ${MEGA_BIN} migrate generate ${name}`, '/dev/null'], {
        cwd: dir,
        env: { ...process.env, NODE_ENV: 'test' },
      });
      // Typed ahead: each question reads one line.
      run.child.stdin?.end(typed);
      return (await run).stdout;
    };
    const source = (suffix: string) =>
      readFileSync(join(dir, 'migrations', migrationFiles(dir).find((f) => f.endsWith(suffix)) as string), 'utf8');

    const no = await onTty('dropped', 'n\nn\n');
    expect(no).toContain('Did you rename table notes to posts? (no: drop notes, create posts) [y/N]');
    expect(no).toContain('Did you rename column users.name to full_name? (no: drop name, add full_name) [y/N]');
    expect(source('-dropped.ts')).toContain(".dropColumn('name')");
    rmSync(join(dir, 'migrations', migrationFiles(dir).find((f) => f.endsWith('-dropped.ts')) as string));

    await onTty('renamed', 'y\ny\n');
    expect(source('-renamed.ts')).toContain(".renameColumn('name', 'full_name')");
    expect(source('-renamed.ts')).toContain(".alterTable('notes').renameTo('posts')");
  });

  it('refuses to generate when migrations exist without their journal; --baseline records the models', async () => {
    const dir = await sqliteProject({ 'models/v1.ts': MODELS_V1 });
    await mega(dir, 'migrate', 'generate', 'create-users');
    rmSync(join(dir, '.mega/journal'), { recursive: true });
    const r = await mega(dir, 'migrate', 'generate', 'again');
    expect(r).toMatchObject({ code: 1, stderr: expect.stringContaining('migrations.journal_missing') });
    expect(migrationFiles(dir)).toHaveLength(1);
    expect((await mega(dir, 'migrate', 'generate', '--baseline')).code).toBe(0);
    expect((await mega(dir, 'migrate', 'generate', 'again')).stdout).toContain('nothing to do');
  });

  it('is also the `migration` kind of mega generate', async () => {
    const dir = await sqliteProject({ 'models/v1.ts': MODELS_V1 });
    const list = await mega(dir, 'generate');
    expect(list.stdout).toMatch(/\n {2}migration\s+.*\(@mega\/migrations\)/);
    const r = await mega(dir, 'generate', 'migration', 'CreateUsers');
    expect(r.code, r.stderr).toBe(0);
    expect(migrationFiles(dir)).toEqual([expect.stringMatching(/^\d{14}-create-users\.ts$/)]);
    const empty = await mega(dir, 'generate', 'migration', 'backfill-roles', '--empty');
    expect(empty.stdout).toMatch(/create migrations\/\d{14}-backfill-roles\.ts \(empty\)/);
    expect((await mega(dir, 'generate', 'migration', '9lives')).stderr).toContain('migrations.invalid_name');
  });
});

describe('mega migrate up | status | down | redo', () => {
  it('prints one line per migration with its duration, reports drift, and the files type-check', async () => {
    const dir = await sqliteProject({ 'models/v1.ts': MODELS_V1 });
    await mega(dir, 'migrate', 'generate', 'create-users');
    rmSync(join(dir, 'models/v1.ts'));
    writeFileSync(join(dir, 'models/v2.ts'), MODELS_V2);
    await mega(dir, 'migrate', 'generate', 'v2', '--rename', 'users.name:full_name', '--rename', 'notes:posts');
    const [f1, f2] = migrationFiles(dir).map((f) => f.slice(0, -3)) as [string, string];

    const up = await mega(dir, 'migrate', 'up');
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(
      new RegExp(
        `app \\S+, db primary \\(sqlite\\)\\n {2}up {4}${f1} \\(\\d+ ms\\)\\n {2}up {4}${f2} \\(\\d+ ms\\)\\napplied 2 migration\\(s\\) in \\d+ ms`,
      ),
    );

    const status = await mega(dir, 'migrate', 'status', '--verify');
    expect(status.code, status.stdout).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`applied {3}${f1} .*\\(batch 1, \\d+ ms\\)`));
    expect(status.stdout).toContain('schema matches the models');

    const redo = await mega(dir, 'migrate', 'redo');
    expect(redo.stdout).toMatch(new RegExp(`down {2}${f2} \\(\\d+ ms\\)[\\s\\S]*up {4}${f2} \\(\\d+ ms\\)[\\s\\S]*redid ${f2}`));

    const down = await mega(dir, 'migrate', 'down', '--steps', '2');
    expect(down.stdout).toMatch(new RegExp(`down {2}${f2} \\(\\d+ ms\\)\\n {2}down {2}${f1} \\(\\d+ ms\\)\\nreverted 2 migration\\(s\\)`));
    expect((await mega(dir, 'migrate', 'down')).stdout).toContain('nothing to do: no applied migration');
    expect((await mega(dir, 'migrate', 'up', '--to', 'create-users')).stdout).toMatch(new RegExp(`up {4}${f1}`));
    expect((await mega(dir, 'migrate', 'down', '--steps', '0')).code).toBe(2);
    // A production .env is not run as development by an --env flag (as mega start refuses it).
    writeFileSync(join(dir, '.env'), 'NODE_ENV=production\n');
    const conflict = await mega(dir, 'migrate', 'down', '--env', 'development');
    expect(conflict).toMatchObject({ code: 1, stderr: expect.stringContaining('--env development disagrees with NODE_ENV=production') });
    expect(conflict.stdout).not.toContain('down ');
    rmSync(join(dir, '.env'));

    writeFileSync(
      join(dir, `migrations/${f1}.ts`),
      `${readFileSync(join(dir, `migrations/${f1}.ts`), 'utf8')}\n// edited after it was applied\n`,
    );
    const drift = await mega(dir, 'migrate', 'status');
    expect(drift.code).toBe(1);
    expect(drift.stdout).toMatch(new RegExp(`drift {5}${f1}`));
    // What drift means and the two ways out, under the table.
    expect(drift.stdout).toContain(
      `${f1} changed after it was applied: restore the file from version control, or accept it with mega migrate resolve ${f1} --applied`,
    );
    const refused = await mega(dir, 'migrate', 'up');
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringContaining('migrations.drift') });

    // The generated files compile against @mega/migrations's types (strict).
    expect(await typecheck(dir)).toBe('');
  });

  it('MongoDB migration files type-check too (generate needs no server)', async () => {
    const config = {
      plugins: ['@mega/db-mongo', '@mega/models', '@mega/migrations'],
      services: { dbs: { primary: { driver: 'mongodb', url: 'mongodb://127.0.0.1:9/unused' } } },
    };
    const dir = writeProject({
      'app.config.ts': 'export default {};\n',
      'mega.config.ts': `export default ${JSON.stringify(config)};\n`,
      'models/v1.ts': MODELS_V1,
    });
    expect((await mega(dir, 'migrate', 'generate', 'create-users')).code).toBe(0);
    rmSync(join(dir, 'models/v1.ts'));
    writeFileSync(join(dir, 'models/v2.ts'), MODELS_V2);
    expect((await mega(dir, 'migrate', 'generate', 'v2', '--rename', 'users.name:full_name', '--rename', 'notes:posts')).code).toBe(0);
    const files = migrationFiles(dir).map((f) => readFileSync(join(dir, 'migrations', f), 'utf8'));
    expect(files.every((f) => f.includes("import type { MongoMigration } from '@mega/migrations';"))).toBe(true);
    expect(files[1]).toContain("db.collection('notes').rename('posts')");
    expect(files[1]).toContain("$rename: { name: 'full_name' }");
    expect(await typecheck(dir)).toBe('');
  });
});
