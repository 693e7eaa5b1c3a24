/**
 * The migration lock, one per database, so that processes starting at once (rolling deploys,
 * `mega start --workers N` with `migrations.auto`) never run a migration twice:
 *
 * - Postgres and PGlite: a session advisory lock (`pg_try_advisory_lock`) on the migration connection;
 * - MySQL/MariaDB: `GET_LOCK('mega_migrations:<database>')` on the migration connection;
 * - SQLite: no session lock exists; each migration runs in a `BEGIN EXCLUSIVE` transaction that
 *   re-reads `mega_migrations` first (see runner.ts);
 * - MongoDB: a lock document with an expiry renewed by a heartbeat and a fencing token that every
 *   write to `mega_migrations` is conditioned on.
 *
 * Inside one process the lock is also an async mutex per adapter: a Postgres advisory lock is
 * re-entrant within one session, and PGlite has only one.
 */
import { hostname } from 'node:os';
import { MegaError, UnavailableError } from '@mega/kernel';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { Db } from 'mongodb';

const chains = new WeakMap<object, Promise<unknown>>();

/** Runs `fn` after every earlier call for the same `key` in this process settled. */
export async function inProcess<T>(key: object, fn: () => Promise<T>): Promise<T> {
  const prev = chains.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  chains.set(
    key,
    run.catch(() => undefined),
  );
  return run;
}

export interface LockOptions {
  timeoutMs: number;
  /** Called once when the lock is busy: who waits for what. */
  waiting(line: string): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const timeout = (what: string, ms: number) =>
  new UnavailableError(
    'migrations.lock_timeout',
    `the migration lock of ${what} was not free within ${ms} ms: another process is migrating (or died holding a Mongo lock; it expires by itself)`,
    {
      details: { db: what, timeoutMs: ms },
    },
  );

/** 'megamigr' as a 64-bit key: the same on every process, distinct from application advisory locks. */
const PG_KEY = '7882828770296760690';

// biome-ignore lint/suspicious/noExplicitAny: the lock talks to no model table.
type Conn = Kysely<any>;

async function poll(tryOnce: () => Promise<boolean>, what: string, options: LockOptions): Promise<void> {
  const end = Date.now() + options.timeoutMs;
  let told = false;
  let wait = 50;
  while (!(await tryOnce())) {
    if (!told) {
      options.waiting(`waiting for the migration lock of ${what} (another process holds it)`);
      told = true;
    }
    if (Date.now() > end) throw timeout(what, options.timeoutMs);
    await sleep(wait);
    wait = Math.min(wait * 2, 500);
  }
}

/** Postgres/PGlite: session advisory lock on `conn`; resolves to its release. */
export async function pgLock(conn: Conn, what: string, options: LockOptions): Promise<() => Promise<void>> {
  await poll(
    async () => {
      const r = await sql<{ ok: boolean }>`select pg_try_advisory_lock(${PG_KEY}::bigint) as ok`.execute(conn);
      return r.rows[0]?.ok === true;
    },
    what,
    options,
  );
  return async () => {
    await sql`select pg_advisory_unlock(${PG_KEY}::bigint)`.execute(conn);
  };
}

/** MySQL/MariaDB: a named lock per database on `conn`; resolves to its release. */
export async function mysqlLock(conn: Conn, what: string, options: LockOptions): Promise<() => Promise<void>> {
  const name = sql`concat('mega_migrations:', database())`;
  await poll(
    async () => {
      const r = await sql<{ ok: number | null }>`select get_lock(${name}, 0) as ok`.execute(conn);
      return Number(r.rows[0]?.ok) === 1;
    },
    what,
    options,
  );
  return async () => {
    await sql`select release_lock(${name})`.execute(conn);
  };
}

export interface MongoLock {
  /** The fencing token: strictly greater than every earlier holder's. */
  readonly token: number;
  /** Renews the lease; throws `migrations.lock_lost` when another holder took over (this one expired). */
  assertHeld(): Promise<void>;
  release(): Promise<void>;
}

export const MONGO_LOCK_COLLECTION = 'mega_migrations_lock';

interface LockDoc {
  _id: string;
  owner: string | null;
  token: number;
  expiresAt: Date;
}

/**
 * MongoDB: `{ _id: 'lock', owner, token, expiresAt }` in `mega_migrations_lock`. Taken when free or
 * expired (the token is incremented in the same update), renewed every ttl/3 while held. The
 * document is never deleted, so tokens only grow (a TTL index would reset them).
 */
export async function mongoLock(db: Db, what: string, ttlMs: number, options: LockOptions): Promise<MongoLock> {
  const col = db.collection<LockDoc>(MONGO_LOCK_COLLECTION);
  const owner = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
  let token = 0;
  await poll(
    async () => {
      const now = new Date();
      try {
        const doc = await col.findOneAndUpdate(
          { _id: 'lock', $or: [{ owner: null }, { expiresAt: { $lt: now } }] },
          { $set: { owner, expiresAt: new Date(now.getTime() + ttlMs) }, $inc: { token: 1 } },
          { upsert: true, returnDocument: 'after' },
        );
        if (doc?.owner !== owner) return false;
        token = doc.token;
        return true;
      } catch (error) {
        // The upsert of a held lock collides with the existing document: busy.
        if ((error as { code?: number }).code === 11000) return false;
        throw error;
      }
    },
    what,
    options,
  );
  let lost = false;
  const renew = async () => {
    const r = await col.updateOne({ _id: 'lock', owner, token }, { $set: { expiresAt: new Date(Date.now() + ttlMs) } });
    if (r.matchedCount !== 1) lost = true;
  };
  const timer = setInterval(() => void renew().catch(() => undefined), Math.max(100, Math.floor(ttlMs / 3)));
  timer.unref();
  return {
    token,
    async assertHeld() {
      if (!lost) await renew();
      if (lost) {
        throw new MegaError(
          'migrations.lock_lost',
          `the migration lock of ${what} expired and another process took it: stopped before writing`,
          {
            details: { db: what, token },
          },
        );
      }
    },
    async release() {
      clearInterval(timer);
      await col.updateOne({ _id: 'lock', owner, token }, { $set: { owner: null, expiresAt: new Date(0) } });
    },
  };
}
