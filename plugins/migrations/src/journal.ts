/**
 * The journal: the schema the migrations of one app and db alias produce, so `generate` diffs the
 * models against it without a database. `history/<id>.json` holds the schema after each migration
 * and `snapshot.json` a copy of the newest one. Commit the journal with the migrations: a clone
 * without it cannot tell what the migrations already create (`generate` refuses then).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { ConfigError } from '@mega/kernel';
import type { SchemaSnapshot } from '@mega/models';
import { emptySnapshot } from './diff.js';
import type { Layout } from './files.js';

export interface JournalEntry {
  version: 1;
  /** The migration this schema follows. */
  id: string;
  app: string;
  alias: string;
  kind: 'sql' | 'mongo';
  snapshot: SchemaSnapshot;
}

export interface JournalState {
  snapshot: SchemaSnapshot;
  /** The migration the snapshot follows (undefined: empty journal). */
  id: string | undefined;
  kind: 'sql' | 'mongo' | undefined;
  /** Something the reader fixed up and the user should know (a history entry without a migration file). */
  notes: string[];
}

function readEntry(file: string, layout: Layout, projectDir: string): JournalEntry {
  let e: Partial<JournalEntry>;
  try {
    e = JSON.parse(readFileSync(file, 'utf8')) as Partial<JournalEntry>;
  } catch (error) {
    throw new ConfigError('migrations.journal_invalid', `${relative(projectDir, file)} is not valid JSON: ${(error as Error).message}`, {
      details: { file: relative(projectDir, file) },
    });
  }
  if (e.version !== 1 || typeof e.id !== 'string' || typeof e.snapshot?.tables !== 'object') {
    throw new ConfigError('migrations.journal_invalid', `${relative(projectDir, file)} is not a migrations journal entry (version 1)`, {
      details: { file: relative(projectDir, file) },
    });
  }
  if (e.alias !== layout.alias) {
    throw new ConfigError(
      'migrations.journal_mismatch',
      `${relative(projectDir, file)} belongs to db "${e.alias}", but this folder is db "${layout.alias}"'s: the app's default db changed? Move the folders (migrations/ and ${relative(projectDir, layout.journalDir)}) to match`,
      { details: { file: relative(projectDir, file), alias: layout.alias, journalAlias: e.alias } },
    );
  }
  return e as JournalEntry;
}

const historyDir = (layout: Layout) => join(layout.journalDir, 'history');

/**
 * The journal's schema: the history entry of the newest migration that still has a file. A newest
 * entry whose migration file was deleted (to regenerate it) is skipped and reported.
 */
export function readJournal(layout: Layout, migrationIds: readonly string[], projectDir: string): JournalState {
  const notes: string[] = [];
  const dir = historyDir(layout);
  const history = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -5))
        .sort()
    : [];
  const ids = new Set(migrationIds);
  for (let i = history.length - 1; i >= 0; i--) {
    const id = history[i] as string;
    if (!ids.has(id)) {
      notes.push(`journal entry ${id} has no migration file any more: the schema before it is used`);
      continue;
    }
    const e = readEntry(join(dir, `${id}.json`), layout, projectDir);
    return { snapshot: e.snapshot, id, kind: e.kind, notes };
  }
  if (migrationIds.length) {
    throw new ConfigError(
      'migrations.journal_missing',
      `${relative(projectDir, layout.migrationsDir) || '.'} has migrations but ${relative(projectDir, layout.journalDir)}/history has no entry for them, so what they create is unknown and a new migration would create it twice. Restore the journal from version control (commit ${relative(projectDir, layout.journalDir)} with the migrations; in .gitignore write "**/.mega/*" and "!**/.mega/journal/" instead of ".mega/"), or, if the database matches the models, record them as the journal with: mega migrate generate --baseline`,
      { details: { app: layout.app, alias: layout.alias, migrations: migrationIds.length } },
    );
  }
  return { snapshot: emptySnapshot(), id: undefined, kind: undefined, notes };
}

function writeAtomic(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

/** Records the schema after migration `id` (history entry + snapshot.json). */
export function writeJournal(layout: Layout, entry: Omit<JournalEntry, 'version' | 'app' | 'alias'>): void {
  const e: JournalEntry = { version: 1, id: entry.id, app: layout.app, alias: layout.alias, kind: entry.kind, snapshot: entry.snapshot };
  writeAtomic(join(historyDir(layout), `${entry.id}.json`), e);
  writeAtomic(join(layout.journalDir, 'snapshot.json'), e);
}

/** Removes history entries whose migration file is gone (after they were reported). */
export function pruneJournal(layout: Layout, migrationIds: readonly string[]): void {
  const dir = historyDir(layout);
  if (!existsSync(dir)) return;
  const ids = new Set(migrationIds);
  for (const f of readdirSync(dir)) if (f.endsWith('.json') && !ids.has(f.slice(0, -5))) unlinkSync(join(dir, f));
}
