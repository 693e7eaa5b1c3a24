/**
 * `npm run bench:models` — @mega/models against the raw `pg` driver on the same real PostgreSQL, in
 * one run (issue 14 §5; goal: at most 10% overhead).
 *
 * Two client processes, forked from this file:
 *   model  the full stack: @mega/db-postgres's pool (its Kysely, stats and error mapping) under a model
 *          (`User.find(id)`, `User.create({...})`, `User.list({ where, limit })`): input checks,
 *          defaults and timestamps, compiled statements, row normalisation, cursor encoding
 *   raw    a `pg.Pool` with the adapter's default pool options running the statements Kysely
 *          compiles for the model, written out (same SQL text and parameters, same rows and types
 *          parsed, `limit + 1` rows fetched for a page; see `rawClient`)
 * Operations: find by primary key, create (INSERT ... RETURNING), list (20 rows with a where clause),
 * each run `--ops` times with `--window` in flight, on a table seeded with 10,000 rows.
 *
 * Primary figure: the client process's CPU µs per operation, from /proc/<pid>/task/<tid>/schedstat
 * (every thread, ns resolution; /proc/<pid>/stat utime+stime when a thread ended). The PostgreSQL
 * server runs the same statements for both and is left out. Rounds are interleaved (each round runs
 * every operation on both clients, the order alternating), the table shows medians and the ratio is
 * the median of the per-round ratios. ops/s is printed beside it. `--concurrent` runs the clients of
 * a round at the same time instead (both see the same machine load: steadier ratios on a busy host).
 *
 * `--ladder` adds the steps between raw pg and the model (see `Side`), to show which layer costs what,
 * with each client's user/system CPU split and GC pauses per operation.
 *
 * `--no-db` measures the model layer alone, in this process: the same three calls over a SqlDb whose
 * `execute` answers at once with ready rows (the statements still compiled by Kysely), CPU µs per call.
 *
 * `--only find,list` runs some operations; `--cpu-prof DIR` writes a V8 CPU profile of each client
 * process there (`<side>.cpuprofile`), over the measured rounds only (not start-up or warm-up).
 *
 *   node scripts/bench-models.ts [--ops 4000] [--rounds 5] [--window 8] [--only find,create,list]
 *                                [--concurrent] [--ladder] [--cpu-prof DIR] [--no-db] [--json]
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { serviceEnv } from './test/service-env.ts';

const TABLE = 'mega_bench_models';
const SELF = fileURLToPath(import.meta.url);
const OPS = ['find', 'create', 'list'] as const;
type Op = (typeof OPS)[number];
/**
 * `raw` and `model` are the comparison; the others (`--ladder`) are the steps between them, each the
 * previous one plus one layer: `pool` the adapter's own pg pool running raw's statements, `query`
 * the adapter's `query()` (stats, tracing branch, client-side bound, retry, error mapping),
 * `execute` its `SqlDb.execute` (what the model calls outside transactions).
 */
type Side = 'model' | 'raw' | 'pool' | 'query' | 'execute';
const LADDER: Side[] = ['pool', 'query', 'execute'];

// ------------------------------------------------------------------ child: one client

interface Client {
  find(id: number): Promise<unknown>;
  create(i: number): Promise<unknown>;
  list(): Promise<unknown>;
  close(): Promise<void>;
}

async function adapter(url: string) {
  const { PostgresDb } = await import('@mega/db-postgres');
  const noop = () => undefined;
  const log = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, child: () => log, level: 'silent' };
  const db = new PostgresDb('bench', { driver: 'postgres', url, max: 10 }, process.cwd(), log as never);
  await db.connect();
  return db;
}

async function modelClient(url: string): Promise<Client> {
  const db = await adapter(url);
  const User = await benchModel(db);
  const tag = `${process.pid}m`;
  return {
    find: (id) => User.find(id),
    create: (i) => User.create({ email: `${tag}${i}@example.com`, name: 'Bench', age: i % 90 }),
    list: () => User.list({ where: { age: { gte: 30 } }, limit: 20 }),
    close: () => db.close(),
  };
}

/** The bench's model (the table `main` creates), bound to `db`. */
async function benchModel(db: unknown) {
  const { defineModel, field } = await import('@mega/models');
  return defineModel({
    name: 'User',
    table: TABLE,
    fields: {
      id: field.id(),
      email: field.string({ length: 120 }).unique(),
      name: field.string({ length: 80 }).nullable(),
      age: field.integer(),
    },
    timestamps: true,
  }).bind(db);
}

/** `--no-db`: the model layer's own CPU per call, over a SqlDb answering at once (rows made ahead). */
async function modelOnly(ops: readonly Op[]): Promise<void> {
  const { Kysely, PostgresDialect } = await import('kysely');
  const kysely = new Kysely<never>({ dialect: new PostgresDialect({ pool: {} as never }) });
  const now = new Date();
  const row = (id: number) => ({ id, email: `u${id}@example.com`, name: 'Seed', age: id % 90, created_at: now, updated_at: now });
  const page = Array.from({ length: 21 }, (_, i) => row(i + 1));
  const one = [row(1)];
  const db = {
    alias: 'no-db',
    dialect: 'postgres' as const,
    kysely: () => kysely,
    toMegaError: (error: unknown) => error as never,
    // Fresh row objects for a page (the model normalises rows in place), as a driver gives.
    execute: (q: { sql: string }) =>
      Promise.resolve({ rows: q.sql.endsWith('limit $2') ? page.map((r) => ({ ...r })) : [{ ...one[0] }], numAffectedRows: 1n }),
  };
  const User = await benchModel(db);
  const calls: Record<Op, (i: number) => Promise<unknown>> = {
    find: (i) => User.find(1 + (i % 1000)),
    create: (i) => User.create({ email: `x${i}@example.com`, name: 'Bench', age: i % 90 }),
    list: () => User.list({ where: { age: { gte: 30 } }, limit: 20 }),
  };
  const baseline = (q: string) => () => db.execute({ sql: q });
  console.log('model layer alone (no database), CPU µs per call, median of 5 runs of 50,000:');
  for (const op of ops) {
    const fn = calls[op];
    const empty = baseline(op === 'list' ? 'limit $2' : '');
    const measure = async (f: (i: number) => Promise<unknown>) => {
      for (let i = 0; i < 20_000; i++) await f(i);
      const runs: number[] = [];
      for (let r = 0; r < 5; r++) {
        const c = process.cpuUsage();
        for (let i = 0; i < 50_000; i++) await f(i);
        const { user, system } = process.cpuUsage(c);
        runs.push((user + system) / 50_000);
      }
      return median(runs);
    };
    const total = await measure(fn);
    const answer = await measure(empty);
    console.log(`${op.padEnd(8)} ${(total - answer).toFixed(2)} µs (${total.toFixed(2)} with the stand-in driver's ${answer.toFixed(2)})`);
  }
}

/** The ladder's steps: the model's statements (as Kysely compiles them) through one adapter layer. */
async function ladderClient(url: string, side: Side): Promise<Client> {
  const db = await adapter(url);
  const pool = db.native as pg.Pool;
  const run: (sql: string, params: unknown[]) => Promise<{ rows: Record<string, unknown>[] }> =
    side === 'pool'
      ? (sql, params) => pool.query(sql, params)
      : side === 'query'
        ? (sql, params) => db.query(sql, params)
        : (sql, params) => db.execute({ sql, parameters: params });
  return sqlClient(run, `${process.pid}${side[0]}`, () => db.close());
}

/**
 * The raw client: the statements Kysely compiles for the model (same text, same parameters, both
 * unnamed extended-protocol queries), on a `pg.Pool` with the adapter's default pool options
 * (connect timeout, idle timeout, server-side statement_timeout), as a production pool would be
 * configured. Not the adapter's client-side read bound: pg's `query_timeout` costs 5-8 µs per
 * statement (the adapter bounds statements another way), so raw would pay more than the model.
 */
async function rawClient(url: string): Promise<Client> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 10_000,
    statement_timeout: 30_000,
    application_name: 'bench-models-raw',
  });
  await pool.query('select 1');
  return sqlClient(
    (sql, params) => pool.query(sql, params),
    `${process.pid}r`,
    () => pool.end(),
  );
}

/** The three operations as hand-written statements (the SQL Kysely compiles for the model) on `run`. */
function sqlClient(
  run: (sql: string, params: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>,
  tag: string,
  close: () => Promise<void>,
): Client {
  return {
    find: async (id) => (await run(`select * from "${TABLE}" where "id" = $1`, [id])).rows[0],
    create: async (i) => {
      const now = new Date();
      const res = await run(
        `insert into "${TABLE}" ("email", "name", "age", "created_at", "updated_at") values ($1, $2, $3, $4, $5) returning *`,
        [`${tag}${i}@example.com`, 'Bench', i % 90, now, now],
      );
      return res.rows[0];
    },
    list: async () => {
      const rows = (await run(`select * from "${TABLE}" where "age" >= $1 order by "id" asc limit $2`, [30, 21])).rows;
      return { items: rows.slice(0, 20), more: rows.length > 20 };
    },
    close,
  };
}

async function child(side: Side, url: string): Promise<void> {
  const client = side === 'raw' ? await rawClient(url) : side === 'model' ? await modelClient(url) : await ladderClient(url, side);
  const send = (m: Record<string, unknown>) => process.send?.(m);
  let counter = 0;
  // GC pauses (main thread), a diagnostic beside the CPU figures.
  const gc = { ms: 0 };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gc.ms += entry.duration;
  }).observe({ entryTypes: ['gc'] });
  let profiler: { session: import('node:inspector/promises').Session; dir: string } | undefined;
  process.on('message', async (m: { cmd: string; op?: Op; n?: number; window?: number; maxId?: number; profile?: string }) => {
    if (m.cmd === 'stop') {
      if (profiler) {
        const { profile } = await profiler.session.post('Profiler.stop');
        writeFileSync(join(profiler.dir, `${side}.cpuprofile`), JSON.stringify(profile));
      }
      await client.close();
      process.exit(0);
    }
    if (m.cmd !== 'run') return;
    try {
      if (m.profile && !profiler) {
        const { Session } = await import('node:inspector/promises');
        const session = new Session();
        session.connect();
        await session.post('Profiler.enable');
        await session.post('Profiler.start');
        profiler = { session, dir: m.profile };
      }
      const n = m.n as number;
      let next = 0;
      const cpu = process.cpuUsage();
      const gc0 = gc.ms;
      const started = performance.now();
      const worker = async () => {
        while (next < n) {
          const i = next++;
          if (m.op === 'find') await client.find(1 + ((i * 7919) % (m.maxId as number)));
          else if (m.op === 'create') await client.create(counter++);
          else await client.list();
        }
      };
      await Promise.all(Array.from({ length: m.window as number }, worker));
      const ms = performance.now() - started;
      const { user, system } = process.cpuUsage(cpu);
      send({ cmd: 'done', ms, user, system, gc: gc.ms - gc0 });
    } catch (error) {
      send({ cmd: 'error', error: String((error as Error)?.stack ?? error) });
    }
  });
  send({ cmd: 'ready' });
}

// ------------------------------------------------------------------ parent: orchestration

const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

interface CpuReading {
  stat: number;
  fine: number;
  tids: Set<string>;
}

function readCpu(pid: number): CpuReading {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const reading: CpuReading = { stat: ((Number(f[11]) + Number(f[12])) * 1e6) / TICK, fine: 0, tids: new Set() };
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        reading.fine += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
        reading.tids.add(tid);
      } catch {
        // the thread ended between readdir and read: the delta falls back to stat
      }
    }
  } catch {
    reading.fine = Number.NaN;
  }
  return reading;
}

function cpuDelta(a: CpuReading, b: CpuReading): number {
  const lost = Number.isNaN(a.fine) || Number.isNaN(b.fine) || [...a.tids].some((t) => !b.tids.has(t));
  return lost ? b.stat - a.stat : b.fine - a.fine;
}

/** A run as the child saw it: wall ms, and its own user/system CPU µs (getrusage; a diagnostic split). */
interface RunResult {
  ms: number;
  user: number;
  system: number;
  /** GC pause ms (main thread). */
  gc: number;
}

interface Child {
  side: Side;
  proc: ChildProcess;
  /** `profile`: a directory; the child profiles itself from this run on (written at stop). */
  run(op: Op, n: number, window: number, maxId: number, profile?: string): Promise<RunResult>;
  stop(): Promise<void>;
}

function startChild(side: Side, url: string): Promise<Child> {
  return new Promise((resolveChild, reject) => {
    const proc = fork(SELF, ['--child', side], {
      env: { ...process.env, NODE_ENV: 'production', BENCH_MODELS_URL: url },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let pending: { ok(r: RunResult): void; fail(e: Error): void } | undefined;
    proc.on('message', (m: { cmd: string; ms?: number; user?: number; system?: number; gc?: number; error?: string }) => {
      if (m.cmd === 'ready') {
        resolveChild({
          side,
          proc,
          run: (op, n, window, maxId, profile) =>
            new Promise<RunResult>((ok, fail) => {
              pending = { ok, fail };
              proc.send({ cmd: 'run', op, n, window, maxId, profile });
            }),
          stop: async () => {
            const exited = new Promise((r) => proc.once('exit', r));
            proc.send({ cmd: 'stop' });
            await exited;
          },
        });
      } else if (m.cmd === 'done')
        pending?.ok({ ms: m.ms as number, user: m.user as number, system: m.system as number, gc: m.gc as number });
      else if (m.cmd === 'error') pending?.fail(new Error(`${side}: ${m.error}`));
    });
    proc.on('exit', (code) => {
      if (code) {
        reject(new Error(`${side} client exited with ${code}`));
        pending?.fail(new Error(`${side} client exited with ${code}`));
      }
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ops: { type: 'string', default: '4000' },
      rounds: { type: 'string', default: '5' },
      window: { type: 'string', default: '8' },
      json: { type: 'boolean', default: false },
      ladder: { type: 'boolean', default: false },
      concurrent: { type: 'boolean', default: false },
      only: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'no-db': { type: 'boolean', default: false },
      child: { type: 'string' },
    },
  });
  if (values.child) return child(values.child as Side, process.env.BENCH_MODELS_URL as string);
  const n = Number(values.ops);
  const rounds = Number(values.rounds);
  const window = Number(values.window);
  const url = serviceEnv().DATABASE_URL;
  const ops = values.only ? OPS.filter((op) => (values.only as string).split(',').includes(op)) : [...OPS];
  if (ops.length === 0) throw new Error(`--only takes a comma list of ${OPS.join(', ')}`);
  if (values['no-db']) return modelOnly(ops);

  const admin = new pg.Pool({ connectionString: url, max: 2 });
  await admin.query(`drop table if exists ${TABLE}`);
  await admin.query(`create table ${TABLE} (id serial primary key, email varchar(120) not null unique, name varchar(80),
    age integer not null, created_at timestamptz not null default now(), updated_at timestamptz not null default now())`);
  await admin.query(`create index ${TABLE}_age_idx on ${TABLE} (age)`);
  await admin.query(
    `insert into ${TABLE} (email, name, age) select 'seed' || g || '@example.com', 'Seed', g % 90 from generate_series(1, 10000) g`,
  );
  await admin.query(`analyze ${TABLE}`);
  const maxId = 10000;

  const sides: Side[] = values.ladder ? ['model', 'raw', ...LADDER] : ['model', 'raw'];
  const clients = {} as Record<Side, Child>;
  for (const side of sides) clients[side] = await startChild(side, url);
  const profileDir = values['cpu-prof'] ? resolve(values['cpu-prof']) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const samples = Object.fromEntries(ops.map((op) => [op, Object.fromEntries(sides.map((side) => [side, []]))])) as unknown as Record<
    Op,
    Record<Side, Array<{ us: number; opsPerSec: number; userUs: number; sysUs: number; gcUs: number }>>
  >;
  // Warm-up: JIT, pools, statement caches.
  for (const op of ops) for (const side of sides) await clients[side].run(op, Math.min(1000, n), window, maxId);

  const header = `bench:models  ${n} ops per run, window ${window}, ${rounds} interleaved rounds; node ${process.version}; PostgreSQL at ${url.replace(/\/\/[^@]*@/, '//***@')}`;
  if (!values.json) console.log(`${header}\n`);
  for (let round = 0; round < rounds; round++) {
    for (const op of ops) {
      const measure = async (side: Side) => {
        const c = clients[side];
        const before = readCpu(c.proc.pid as number);
        const r = await c.run(op, n, window, maxId, profileDir);
        const after = readCpu(c.proc.pid as number);
        samples[op][side].push({
          us: cpuDelta(before, after) / n,
          opsPerSec: (n * 1000) / r.ms,
          userUs: r.user / n,
          sysUs: r.system / n,
          gcUs: (r.gc * 1000) / n,
        });
      };
      if (values.concurrent) await Promise.all(sides.map(measure));
      else for (const side of round % 2 === 0 ? sides : [...sides].reverse()) await measure(side);
    }
  }
  await Promise.all(sides.map((side) => clients[side].stop()));
  await admin.query(`drop table if exists ${TABLE}`);
  await admin.end();

  const ratio = (a: Side, op: Op) => median(samples[op][a].map((x, i) => x.us / (samples[op].raw[i]?.us as number)));
  const rows = ops.map((op) => ({
    op,
    modelUs: median(samples[op].model.map((x) => x.us)),
    rawUs: median(samples[op].raw.map((x) => x.us)),
    ratio: ratio('model', op),
    modelOps: median(samples[op].model.map((x) => x.opsPerSec)),
    rawOps: median(samples[op].raw.map((x) => x.opsPerSec)),
    split: Object.fromEntries(
      sides.map((side) => [
        side,
        {
          user: median(samples[op][side].map((x) => x.userUs)),
          sys: median(samples[op][side].map((x) => x.sysUs)),
          gc: median(samples[op][side].map((x) => x.gcUs)),
        },
      ]),
    ),
    ladder: Object.fromEntries(
      sides
        .filter((side) => LADDER.includes(side))
        .map((side) => [side, { us: median(samples[op][side].map((x) => x.us)), ratio: ratio(side, op) }]),
    ),
  }));
  if (values.json) {
    console.log(JSON.stringify({ ops: n, rounds, window, rows }, null, 2));
    return;
  }
  console.log('op       model µs/op   raw pg µs/op   model/raw   overhead   model ops/s   raw ops/s');
  for (const row of rows) {
    console.log(
      `${row.op.padEnd(8)} ${row.modelUs.toFixed(1).padStart(12)} ${row.rawUs.toFixed(1).padStart(14)} ${row.ratio.toFixed(3).padStart(11)} ${`${((row.ratio - 1) * 100).toFixed(1)}%`.padStart(10)} ${row.modelOps.toFixed(0).padStart(13)} ${row.rawOps.toFixed(0).padStart(11)}`,
    );
  }
  if (values.ladder) {
    console.log('\nladder (µs/op, ratio to raw): raw pg → adapter pool → query() → execute() → model');
    for (const row of rows) {
      const steps = Object.entries(row.ladder).map(([side, x]) => `${side} ${x.us.toFixed(1)} (${x.ratio.toFixed(3)})`);
      console.log(
        `${row.op.padEnd(8)} raw ${row.rawUs.toFixed(1)} → ${steps.join(' → ')} → model ${row.modelUs.toFixed(1)} (${row.ratio.toFixed(3)})`,
      );
      const split = Object.entries(row.split).map(([side, x]) => `${side} ${x.user.toFixed(1)}/${x.sys.toFixed(1)}/${x.gc.toFixed(1)}`);
      console.log(`${''.padEnd(8)} user/system/GC-pause µs/op: ${split.join(', ')}`);
    }
  }
  console.log('\nCPU µs per operation of the client process (medians; ratio = median of per-round ratios). Goal: overhead ≤ 10%.');
}

await main();
