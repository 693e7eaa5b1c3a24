/**
 * One process per embedded data directory. PGlite keeps the database in this process's memory and
 * writes it back to the directory; two processes on one directory each see their own rows, and what
 * one commits the other overwrites (185 of 400 committed rows lost in one run, a corrupted directory
 * in another). PostgreSQL itself guards its directory with `postmaster.pid`; PGlite does not.
 *
 * The lock is a pid file, `<data dir>.lock` beside the directory, created with O_EXCL (atomic on
 * every local filesystem, no native module, same code on Linux, macOS and Windows) and removed on
 * close and on process exit. A file left by a process that died (kill -9, power loss) is stale when
 * its pid no longer runs on this host: it is taken over after re-reading it (so of two processes
 * racing for the same stale file one removes it and the other sees the winner's pid).
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { MegaError } from '@mega/kernel';

interface Owner {
  pid: number;
  host: string;
  started: string;
}

const FIX = 'configure services.dbs with a PostgreSQL url';

const inUse = (alias: string, dir: string, lockFile: string, owner: Owner | undefined) =>
  new MegaError(
    'db.embedded_in_use',
    `db "${alias}": the embedded PGlite directory ${dir} is in use by ${
      owner ? `process ${owner.pid} on ${owner.host} (since ${owner.started})` : 'another process'
    }. An embedded database serves one process: stop the other one, or ${FIX} (driver 'postgres') to share one database between processes. If no such process runs, delete ${lockFile}.`,
    { details: { alias, dir, lockFile, ...(owner ? { pid: owner.pid, host: owner.host } : {}) } },
  );

/** Inside `mega start --workers N` every worker would open its own copy of the embedded database. */
export function refuseInWorker(alias: string, dir: string): void {
  const slot = process.env.MEGA_WORKER_SLOT;
  if (slot === undefined) return;
  throw new MegaError(
    'db.embedded_in_use',
    `db "${alias}": the embedded PGlite database (${dir}) cannot serve mega start --workers: each worker process would open its own copy and committed rows would be lost. ${FIX[0]?.toUpperCase()}${FIX.slice(1)} (driver 'postgres', e.g. url: process.env.DATABASE_URL), or start without --workers.`,
    { details: { alias, dir, reason: 'workers', workerSlot: slot } },
  );
}

function readOwner(lockFile: string, text?: string): Owner | undefined {
  try {
    const o = JSON.parse(text ?? readFileSync(lockFile, 'utf8')) as Partial<Owner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? { pid: o.pid, host: o.host, started: String(o.started) } : undefined;
  } catch {
    return undefined;
  }
}

/** True when `owner` is a process running on this host (EPERM: it runs, as another user). */
function alive(owner: Owner): boolean {
  if (owner.host !== hostname()) return true; // another machine on a shared filesystem: cannot tell, assume so
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class DataDirLock {
  readonly #file: string;
  readonly #content: string;
  #held = true;
  readonly #onExit = () => this.release();

  private constructor(file: string, content: string) {
    this.#file = file;
    this.#content = content;
    process.once('exit', this.#onExit);
  }

  /** Takes `<dir>.lock` or throws `db.embedded_in_use` naming the process holding it. */
  static acquire(alias: string, dir: string): DataDirLock {
    const file = `${dir.replace(/[\\/]+$/, '')}.lock`;
    const owner: Owner = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
    const content = `${JSON.stringify(owner)}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      let fd: number;
      try {
        fd = openSync(file, 'wx', 0o644);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch {
          continue; // released between our open and read: try again
        }
        const holder = readOwner(file, text);
        if (holder?.pid === process.pid && holder.host === owner.host) throw inUse(alias, dir, file, holder); // opened twice here
        // An unreadable file may be one being written right now: treat it as held.
        if (!holder || alive(holder)) throw inUse(alias, dir, file, holder);
        // Stale: remove it only if it is still the same file content we judged (another starter may have replaced it).
        try {
          if (readFileSync(file, 'utf8') === text) unlinkSync(file);
        } catch {
          // Gone already: someone else took it over or released it; try again.
        }
        continue;
      }
      try {
        writeSync(fd, content);
      } finally {
        closeSync(fd);
      }
      return new DataDirLock(file, content);
    }
    throw inUse(alias, dir, file, readOwner(file));
  }

  /** Removes the file if it is still ours (idempotent). */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    process.off('exit', this.#onExit);
    try {
      if (readFileSync(this.#file, 'utf8') === this.#content) unlinkSync(this.#file);
    } catch {
      // Already gone.
    }
  }
}
