/**
 * `npm run bench:models` — @mega/models against the raw `pg` driver on the same real PostgreSQL, in
 * one run (issue 14 §5; goal: at most 10% overhead).
 *
 * Two client processes, forked from this file:
 *   model  the full stack: @mega/db-postgres's pool (its Kysely, stats and error mapping) under a model
 *          (`User.find(id)`, `User.create({...})`, `User.list({ where, limit })`): input checks,
 *          defaults and timestamps, compiled statements, row normalisation, cursor encoding
 *   raw    a `pg.Pool` with hand-written parameterised SQL doing the same work (the same columns
 *          inserted, the same rows returned, `limit + 1` rows fetched for a page)
 * Operations: find by primary key, create (INSERT ... RETURNING), list (20 rows with a where clause),
 * each run `--ops` times with `--window` in flight, on a table seeded with 10,000 rows.
 *
 * Primary figure: the client process's CPU µs per operation, from /proc/<pid>/task/<tid>/schedstat
 * (every thread, ns resolution; /proc/<pid>/stat utime+stime when a thread ended). The PostgreSQL
 * server runs the same statements for both and is left out. Rounds are interleaved (each round runs
 * every operation on both clients, the order alternating), the table shows medians and the ratio is
 * the median of the per-round ratios. ops/s is printed beside it.
 *
 * `--execute-prototype` adds a third client: the model over the same adapter given an `execute` fast path
 * (SqlDb.execute, optional) done here on the adapter's pool — what the model costs once the adapter has one.
 *
 *   node scripts/bench-models.ts [--ops 4000] [--rounds 5] [--window 8] [--execute-prototype] [--json]
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { serviceEnv } from './test/service-env.ts';

const TABLE = 'mega_bench_models';
const SELF = fileURLToPath(import.meta.url);
const OPS = ['find', 'create', 'list'] as const;
type Op = (typeof OPS)[number];
type Side = 'model' | 'raw' | 'model+execute';

// ------------------------------------------------------------------ child: one client

interface Client {
  find(id: number): Promise<unknown>;
  create(i: number): Promise<unknown>;
  list(): Promise<unknown>;
  close(): Promise<void>;
}

async function modelClient(url: string, prototype = false): Promise<Client> {
  const { PostgresDb } = await import('@mega/db-postgres');
  const { defineModel, field } = await import('@mega/models');
  const noop = () => undefined;
  const log = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, child: () => log, level: 'silent' };
  const db = new PostgresDb('bench', { driver: 'postgres', url, max: 10 }, process.cwd(), log as never);
  await db.connect();
  // --execute-prototype: what the adapter's optional `SqlDb.execute` fast path would give, until
  // @mega/db-postgres implements it (statements straight on its pool, outside transactions).
  const pool = db.native as pg.Pool;
  const target =
    prototype && !('execute' in db)
      ? {
          alias: db.alias,
          dialect: db.dialect,
          kysely: () => db.kysely(),
          toMegaError: (e: unknown) => db.toMegaError(e),
          execute: async (q: { sql: string; parameters: readonly unknown[] }) => {
            const res = await pool.query(q.sql, q.parameters as unknown[]);
            return { rows: res.rows, ...(res.command === 'SELECT' ? {} : { numAffectedRows: BigInt(res.rowCount ?? 0) }) };
          },
        }
      : db;
  const User = defineModel({
    name: 'User',
    table: TABLE,
    fields: {
      id: field.id(),
      email: field.string({ length: 120 }).unique(),
      name: field.string({ length: 80 }).nullable(),
      age: field.integer(),
    },
    timestamps: true,
  }).bind(target);
  const tag = `${process.pid}m`;
  return {
    find: (id) => User.find(id),
    create: (i) => User.create({ email: `${tag}${i}@example.com`, name: 'Bench', age: i % 90 }),
    list: () => User.list({ where: { age: { gte: 30 } }, limit: 20 }),
    close: () => db.close(),
  };
}

async function rawClient(url: string): Promise<Client> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  await pool.query('select 1');
  const tag = `${process.pid}r`;
  return {
    find: async (id) => (await pool.query(`select * from ${TABLE} where id = $1`, [id])).rows[0],
    create: async (i) => {
      const now = new Date();
      const res = await pool.query(
        `insert into ${TABLE} (email, name, age, created_at, updated_at) values ($1, $2, $3, $4, $5) returning *`,
        [`${tag}${i}@example.com`, 'Bench', i % 90, now, now],
      );
      return res.rows[0];
    },
    list: async () => {
      const rows = (await pool.query(`select * from ${TABLE} where age >= $1 order by id asc limit $2`, [30, 21])).rows;
      return { items: rows.slice(0, 20), more: rows.length > 20 };
    },
    close: () => pool.end(),
  };
}

async function child(side: Side, url: string): Promise<void> {
  const client = side === 'raw' ? await rawClient(url) : await modelClient(url, side === 'model+execute');
  const send = (m: Record<string, unknown>) => process.send?.(m);
  let counter = 0;
  process.on('message', async (m: { cmd: string; op?: Op; n?: number; window?: number; maxId?: number }) => {
    if (m.cmd === 'stop') {
      await client.close();
      process.exit(0);
    }
    if (m.cmd !== 'run') return;
    try {
      const n = m.n as number;
      let next = 0;
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
      send({ cmd: 'done', ms: performance.now() - started });
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

interface Child {
  side: Side;
  proc: ChildProcess;
  run(op: Op, n: number, window: number, maxId: number): Promise<number>;
  stop(): Promise<void>;
}

function startChild(side: Side, url: string): Promise<Child> {
  return new Promise((resolveChild, reject) => {
    const proc = fork(SELF, ['--child', side], {
      env: { ...process.env, NODE_ENV: 'production', BENCH_MODELS_URL: url },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let pending: { ok(ms: number): void; fail(e: Error): void } | undefined;
    proc.on('message', (m: { cmd: string; ms?: number; error?: string }) => {
      if (m.cmd === 'ready') {
        resolveChild({
          side,
          proc,
          run: (op, n, window, maxId) =>
            new Promise<number>((ok, fail) => {
              pending = { ok, fail };
              proc.send({ cmd: 'run', op, n, window, maxId });
            }),
          stop: async () => {
            const exited = new Promise((r) => proc.once('exit', r));
            proc.send({ cmd: 'stop' });
            await exited;
          },
        });
      } else if (m.cmd === 'done') pending?.ok(m.ms as number);
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
      'execute-prototype': { type: 'boolean', default: false },
      child: { type: 'string' },
    },
  });
  if (values.child) return child(values.child as Side, process.env.BENCH_MODELS_URL as string);
  const n = Number(values.ops);
  const rounds = Number(values.rounds);
  const window = Number(values.window);
  const url = serviceEnv().DATABASE_URL;

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

  const sides: Side[] = values['execute-prototype'] ? ['model', 'raw', 'model+execute'] : ['model', 'raw'];
  const clients = {} as Record<Side, Child>;
  for (const side of sides) clients[side] = await startChild(side, url);
  const samples = Object.fromEntries(OPS.map((op) => [op, Object.fromEntries(sides.map((side) => [side, []]))])) as unknown as Record<
    Op,
    Record<Side, Array<{ us: number; opsPerSec: number }>>
  >;
  // Warm-up: JIT, pools, statement caches.
  for (const op of OPS) for (const side of sides) await clients[side].run(op, Math.min(1000, n), window, maxId);

  const header = `bench:models  ${n} ops per run, window ${window}, ${rounds} interleaved rounds; node ${process.version}; PostgreSQL at ${url.replace(/\/\/[^@]*@/, '//***@')}`;
  if (!values.json) console.log(`${header}\n`);
  for (let round = 0; round < rounds; round++) {
    for (const op of OPS) {
      const order: Side[] = round % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        const c = clients[side];
        const before = readCpu(c.proc.pid as number);
        const ms = await c.run(op, n, window, maxId);
        const after = readCpu(c.proc.pid as number);
        samples[op][side].push({ us: cpuDelta(before, after) / n, opsPerSec: (n * 1000) / ms });
      }
    }
  }
  await Promise.all(sides.map((side) => clients[side].stop()));
  await admin.query(`drop table if exists ${TABLE}`);
  await admin.end();

  const ratio = (a: Side, op: Op) => median(samples[op][a].map((x, i) => x.us / (samples[op].raw[i]?.us as number)));
  const rows = OPS.map((op) => ({
    op,
    modelUs: median(samples[op].model.map((x) => x.us)),
    rawUs: median(samples[op].raw.map((x) => x.us)),
    ratio: ratio('model', op),
    modelOps: median(samples[op].model.map((x) => x.opsPerSec)),
    rawOps: median(samples[op].raw.map((x) => x.opsPerSec)),
    ...(sides.includes('model+execute')
      ? { executeUs: median(samples[op]['model+execute'].map((x) => x.us)), executeRatio: ratio('model+execute', op) }
      : {}),
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
  for (const row of rows) {
    if (row.executeUs !== undefined) {
      console.log(
        `${row.op.padEnd(8)} model with the SqlDb.execute prototype: ${row.executeUs.toFixed(1)} µs/op, ratio ${row.executeRatio?.toFixed(3)} (${(((row.executeRatio ?? 1) - 1) * 100).toFixed(1)}%)`,
      );
    }
  }
  console.log('\nCPU µs per operation of the client process (medians; ratio = median of per-round ratios). Goal: overhead ≤ 10%.');
}

await main();
