/**
 * `mega migrate generate <name>` (and `mega generate migration <name>`): for each app and db alias,
 * diff the models against the journal, settle renames (asked on a TTY, `--rename` otherwise),
 * write `migrations/<ts>-<name>.ts` and the journal entry. Needs no database.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pickAlias } from '@mega/adapters';
import type { LoadedApp, MegaConfig } from '@mega/kernel';
import { ConfigError, loadProject, ValidationError } from '@mega/kernel';
import type { SchemaSnapshot } from '@mega/models';
import { loadModels, snapshotsByDb } from '@mega/models';
import { renderEmpty, renderMigration } from './codegen.js';
import type { RenameCandidate, Renames } from './diff.js';
import { describe, diffSnapshots, emptySnapshot, isDestructive, parseRenames } from './diff.js';
import type { Layout, LayoutOptions } from './files.js';
import { aliasFolders, layoutOf, listMigrations, migrationSlug, timestampFor } from './files.js';
import { pruneJournal, readJournal, writeJournal } from './journal.js';

export interface MigrationsSettings extends LayoutOptions {
  table: string;
}

/** `migrations` of mega.config.ts with defaults, read without booting (generate needs no plugin set up). */
export function settingsOf(config: MegaConfig): MigrationsSettings {
  const c = ((config as Record<string, unknown>).migrations ?? {}) as Partial<MigrationsSettings>;
  return { dir: c.dir ?? 'migrations', journalDir: c.journalDir ?? '.mega/journal', table: c.table ?? 'mega_migrations' };
}

/** An app's default db for models (`models.db` of its app.config.ts). */
export function appModelsConfig(app: { config: unknown }): { db?: string } {
  const m = (app.config as { models?: { db?: unknown } } | undefined)?.models;
  return typeof m?.db === 'string' ? { db: m.db } : {};
}

/** `models.dir` of mega.config.ts (where each app keeps its model files). */
export function modelsDirOf(config: MegaConfig): string {
  const m = (config as { models?: { dir?: unknown } }).models;
  return typeof m?.dir === 'string' ? m.dir : 'models';
}

/** The app's default db alias: `models.db`, else `primary` or the only db (the same rule as `ctx.db()`). */
export function defaultAliasOf(app: { config: unknown }, aliases: readonly string[]): string {
  const own = appModelsConfig(app).db;
  if (own) return own;
  return aliases.length ? pickAlias('dbs', aliases, undefined, 'primary') : 'primary';
}

/** `sql` or `mongo`, from the alias's declared driver (nothing declared: the embedded PGlite `primary`). */
export function kindOf(config: MegaConfig, alias: string): 'sql' | 'mongo' {
  const driver = (config.services?.dbs as Record<string, { driver?: string }> | undefined)?.[alias]?.driver;
  return driver === 'mongodb' || driver === 'mongo' ? 'mongo' : 'sql';
}

export interface GenerateOptions {
  name: string;
  app?: string | undefined;
  db?: string | undefined;
  renames: readonly string[];
  allowDestructive: boolean;
  empty: boolean;
  baseline: boolean;
  dryRun: boolean;
  /** A TTY to ask about likely renames; without one, they need --rename or --allow-destructive. */
  ask?: ((question: string) => Promise<boolean>) | undefined;
  say(line: string): void;
  /** For the file header. */
  command: string;
  now?: Date;
}

export interface Generated {
  app: string;
  alias: string;
  /** The file written (undefined: nothing to do, or a dry run / baseline). */
  file: string | undefined;
  ops: string[];
  destructive: boolean;
}

function selectApps(apps: LoadedApp[], only: string | undefined): LoadedApp[] {
  if (!only) return apps;
  const hit = apps.filter((a) => a.name === only);
  if (!hit.length) {
    throw new ConfigError('migrations.unknown_app', `no app "${only}" in this project (apps: ${apps.map((a) => a.name).join(', ')})`, {
      details: { app: only, apps: apps.map((a) => a.name) },
    });
  }
  return hit;
}

function ambiguous(candidates: RenameCandidate[], app: string, alias: string): ValidationError {
  const lines = candidates.map((c) => (c.kind === 'table' ? `${c.from}:${c.to}` : `${c.table}.${c.from}:${c.to}`));
  return new ValidationError(
    'migrations.rename_ambiguous',
    `app ${app}, db ${alias}: these look like renames, and a rename is never guessed: ${lines.map((l) => `--rename ${l}`).join(', ')}. Pass the --rename flags that are renames, or --allow-destructive to drop and re-create (the data of the dropped ones is lost)`,
    { details: { app, alias, candidates: lines } },
  );
}

/** Asks about each candidate once (on a TTY); accepted ones join `accepted`. */
async function settleRenames(
  candidates: RenameCandidate[],
  accepted: string[],
  asked: Set<string>,
  ask: (q: string) => Promise<boolean>,
): Promise<boolean> {
  let changed = false;
  for (const c of candidates) {
    const key = c.kind === 'table' ? `${c.from}:${c.to}` : `${c.table}.${c.from}:${c.to}`;
    if (asked.has(key)) continue;
    asked.add(key);
    const question =
      c.kind === 'table'
        ? `Did you rename table ${c.from} to ${c.to}? (no: drop ${c.from}, create ${c.to})`
        : `Did you rename column ${c.table}.${c.from} to ${c.to}? (no: drop ${c.from}, add ${c.to})`;
    if (await ask(question)) {
      accepted.push(key);
      changed = true;
    }
  }
  return changed;
}

export async function generate(projectDir: string, o: GenerateOptions): Promise<Generated[]> {
  const slug = migrationSlug(o.name);
  const project = await loadProject(projectDir);
  const settings = settingsOf(project.config);
  const declared = Object.keys(project.config.services?.dbs ?? {});
  const aliases = declared.length ? declared : ['primary'];
  const out: Generated[] = [];
  for (const app of selectApps(project.apps, o.app)) {
    const modelsDir = modelsDirOf(project.config);
    const models = await loadModels(app.dir, { dir: modelsDir });
    const defaultAlias = defaultAliasOf(app, aliases);
    const byDb: Record<string, SchemaSnapshot> = models.length ? snapshotsByDb(models, defaultAlias) : {};
    const targets = new Set([...Object.keys(byDb), ...aliasFolders(app.dir, settings.dir)]);
    if (listMigrations(layoutOf(app, defaultAlias, defaultAlias, settings).migrationsDir, project.dir).length) targets.add(defaultAlias);
    if (o.db) {
      targets.clear();
      targets.add(o.db);
    }
    if (!targets.size) {
      o.say(
        `app ${app.name}: no models (and no migrations) yet; define one in ${relative(project.dir, join(app.dir, modelsDir)) || '.'}/ first`,
      );
      continue;
    }
    for (const alias of [...targets].sort()) {
      out.push(
        await generateOne(
          project.dir,
          app,
          alias,
          defaultAlias,
          byDb[alias] ?? emptySnapshot(),
          kindOf(project.config, alias),
          settings,
          slug,
          o,
        ),
      );
    }
  }
  return out;
}

async function generateOne(
  projectDir: string,
  app: LoadedApp,
  alias: string,
  defaultAlias: string,
  next: SchemaSnapshot,
  kind: 'sql' | 'mongo',
  settings: MigrationsSettings,
  slug: string,
  o: GenerateOptions,
): Promise<Generated> {
  const layout: Layout = layoutOf(app, alias, defaultAlias, settings);
  const where = `app ${app.name}, db ${alias}`;
  const files = listMigrations(layout.migrationsDir, projectDir);
  const ids = files.map((f) => f.id);
  const result: Generated = { app: app.name, alias, file: undefined, ops: [], destructive: false };

  if (o.baseline) {
    const newest = ids.at(-1);
    if (!newest) {
      o.say(`${where}: no migrations to baseline; write the first one with: mega migrate generate <name>`);
      return result;
    }
    writeJournal(layout, { id: newest, kind, snapshot: next });
    o.say(`${where}: the journal now records the models as the schema after ${newest}`);
    return result;
  }

  const journal = readJournal(layout, ids, projectDir);
  for (const n of journal.notes) o.say(`${where}: ${n}`);
  if (journal.kind && journal.kind !== kind) {
    throw new ConfigError(
      'migrations.kind_changed',
      `${where}: the journal holds ${journal.kind} migrations but the db is now ${kind}: a db alias cannot change between SQL and MongoDB; use a new alias`,
      {
        details: { app: app.name, alias, journal: journal.kind, db: kind },
      },
    );
  }
  const id = `${timestampFor(o.now ?? new Date(), ids.at(-1)?.slice(0, 14))}-${slug}`;
  const file = join(layout.migrationsDir, `${id}.ts`);
  const shown = relative(projectDir, file);
  const header = { id, app: app.name, alias, kind, command: o.command, generatedAt: o.now ?? new Date() };

  if (o.empty) {
    if (!o.dryRun) {
      mkdirSync(layout.migrationsDir, { recursive: true });
      writeFileSync(file, renderEmpty(header));
      writeJournal(layout, { id, kind, snapshot: journal.snapshot });
      pruneJournal(layout, [...ids, id]);
    }
    o.say(`${o.dryRun ? 'would create' : 'create'} ${shown} (empty)`);
    return { ...result, file: o.dryRun ? undefined : file };
  }

  const accepted = [...o.renames];
  const asked = new Set<string>();
  let renames: Renames = parseRenames(accepted, journal.snapshot, next);
  let diff = diffSnapshots(journal.snapshot, next, renames);
  // On a TTY, each likely rename is asked once; an accepted one can reveal no more candidates, so this ends.
  while (diff.candidates.length && o.ask && (await settleRenames(diff.candidates, accepted, asked, o.ask))) {
    renames = parseRenames(accepted, journal.snapshot, next);
    diff = diffSnapshots(journal.snapshot, next, renames);
  }
  if (diff.candidates.length && !o.allowDestructive && !o.ask) throw ambiguous(diff.candidates, app.name, alias);
  const ops = diff.changes.flatMap((c) => c.ops);
  if (!ops.length) {
    o.say(`${where}: nothing to do, the models match the journal (${journal.id ?? 'no migrations yet'})`);
    return result;
  }
  const source = renderMigration({ ...header, changes: diff.changes });
  result.ops = ops.map((op) => `${isDestructive(op) ? '[destructive] ' : ''}${describe(op)}`);
  result.destructive = ops.some(isDestructive);
  if (!o.dryRun) {
    mkdirSync(layout.migrationsDir, { recursive: true });
    writeFileSync(file, source);
    writeJournal(layout, { id, kind, snapshot: next });
    pruneJournal(layout, [...ids, id]);
    result.file = file;
  }
  o.say(`${o.dryRun ? 'would create' : 'create'} ${shown}`);
  for (const line of result.ops) o.say(`    ${line}`);
  if (result.destructive) o.say('    destructive steps are marked in the file: applying it in production needs --allow-destructive');
  return result;
}
