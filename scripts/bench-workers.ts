/**
 * `npm run bench:workers`: what a @mega/workers pool buys on this machine, in one run.
 *  1. CPU-bound throughput: the same task inline on the main thread vs pools of 1..N threads and a
 *     process pool (ratio vs inline). On 2 cores expect ~1x for 1 thread and <2x for 2.
 *  2. Per-task overhead: sequential round trips of a tiny task (thread vs process mode).
 *  3. The library choice: raw piscina vs tinypool (worker_threads), tiny-task round trip and burst
 *     throughput, CPU-bound throughput; interleaved rounds, best round reported.
 * Needs the build: `tsc -b plugins/workers` (the npm script runs it).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { WorkerPool } = (await import(
  pathToFileURL(join(REPO, 'plugins/workers/dist/pool.js')).href
)) as typeof import('../plugins/workers/src/pool.js');
const { Piscina } = (await import('piscina')) as typeof import('piscina');
const { Tinypool } = (await import('tinypool')) as typeof import('tinypool');

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 2_000_000); // ~25 ms per task on the 2-core dev box
const TASKS = Number(process.env.BENCH_TASKS ?? 48);
const ROUNDS = 3;

const TASK_SOURCE = `
export default function (x: { n: number; v?: number }): number {
  if (x.n === 0) return (x.v ?? 0) + 1;
  let a = 0;
  for (let i = 0; i < x.n; i++) a = (a + Math.sqrt(i) * i) % 1e9;
  return a;
}
`;
const dir = mkdtempSync(join(tmpdir(), 'mega-bench-workers-'));
const taskTs = join(dir, 'cpu.ts');
const taskMjs = join(dir, 'cpu.mjs');
writeFileSync(taskTs, TASK_SOURCE);
writeFileSync(taskMjs, TASK_SOURCE.replace(': { n: number; v?: number }): number', ')'));
const cpu = (await import(pathToFileURL(taskMjs).href)).default as (x: { n: number; v?: number }) => number;

const silent = { warn() {}, debug() {}, info() {}, error() {} } as unknown as import('@mega/kernel').Logger;
const perSec = (count: number, ms: number) => (count / ms) * 1000;
const fmt = (n: number, digits = 1) => n.toFixed(digits);

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

function makePool(mode: 'thread' | 'process', size: number) {
  return new WorkerPool({ name: 'cpu', app: 'bench', file: taskTs, mode, size, queue: 100_000, timeoutMs: 0, log: silent });
}

console.log(
  `cores ${availableParallelism()}, node ${process.version}, task ${ITERATIONS} iterations x ${TASKS} tasks, best of ${ROUNDS}\n`,
);

// 1. Throughput: inline vs pools.
const best = new Map<string, number>();
const keep = (key: string, value: number) => best.set(key, Math.max(best.get(key) ?? 0, value));
const sizes = [...new Set([1, 2, Math.max(1, availableParallelism() - 1), availableParallelism()])].sort();
const pools = new Map<string, InstanceType<typeof WorkerPool>>();
for (const size of sizes) pools.set(`threads x${size}`, makePool('thread', size));
pools.set(`processes x${availableParallelism()}`, makePool('process', availableParallelism()));
for (const pool of pools.values()) await Promise.all(Array.from({ length: pool.size * 2 }, () => pool.run({ n: 1000 }))); // warm: start + jiti
for (let round = 0; round < ROUNDS; round++) {
  keep(
    'inline (main thread)',
    perSec(
      TASKS,
      await timed(() => {
        for (let i = 0; i < TASKS; i++) cpu({ n: ITERATIONS });
      }),
    ),
  );
  for (const [key, pool] of pools) {
    keep(key, perSec(TASKS, await timed(() => Promise.all(Array.from({ length: TASKS }, () => pool.run({ n: ITERATIONS }))))));
  }
}
const inline = best.get('inline (main thread)') ?? 1;
console.log('CPU-bound throughput');
console.log('| runner | tasks/s | vs inline |\n|---|---:|---:|');
for (const [key, value] of best) console.log(`| ${key} | ${fmt(value)} | ${fmt(value / inline, 2)}x |`);

// 2. Per-task overhead through the Mega pool (tiny task, sequential).
console.log('\nPer-task round trip (tiny task, sequential, µs)');
console.log('| mode | µs/task |\n|---|---:|');
for (const [key, pool] of [
  ['thread', pools.get('threads x1')],
  ['process', pools.get(`processes x${availableParallelism()}`)],
] as const) {
  if (!pool) continue;
  let bestUs = Number.POSITIVE_INFINITY;
  for (let round = 0; round < ROUNDS; round++) {
    const n = 2000;
    const ms = await timed(async () => {
      for (let i = 0; i < n; i++) await pool.run({ n: 0, v: i });
    });
    bestUs = Math.min(bestUs, (ms * 1000) / n);
  }
  console.log(`| ${key} | ${fmt(bestUs)} |`);
}
await Promise.all([...pools.values()].map((p) => p.close(0)));

// 3. Library choice, raw (no Mega layer): piscina vs tinypool on worker_threads.
const threads = Math.min(2, availableParallelism());
const filename = pathToFileURL(taskMjs).href;
const libs = {
  piscina: () => new Piscina({ filename, minThreads: threads, maxThreads: threads }),
  tinypool: () => new Tinypool({ filename, minThreads: threads, maxThreads: threads }),
};
const lib = new Map<string, { seqUs: number; burst: number; cpu: number }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, make] of round % 2 ? Object.entries(libs).reverse() : Object.entries(libs)) {
    const pool = make();
    for (let i = 0; i < 200; i++) await pool.run({ n: 0, v: i });
    const seq = await timed(async () => {
      for (let i = 0; i < 3000; i++) await pool.run({ n: 0, v: i });
    });
    const burst = await timed(() => Promise.all(Array.from({ length: 20_000 }, (_, i) => pool.run({ n: 0, v: i }))));
    const heavy = await timed(() => Promise.all(Array.from({ length: TASKS }, () => pool.run({ n: ITERATIONS }))));
    await pool.destroy();
    const prev = lib.get(name) ?? { seqUs: Number.POSITIVE_INFINITY, burst: 0, cpu: 0 };
    lib.set(name, {
      seqUs: Math.min(prev.seqUs, (seq * 1000) / 3000),
      burst: Math.max(prev.burst, perSec(20_000, burst)),
      cpu: Math.max(prev.cpu, perSec(TASKS, heavy)),
    });
  }
}
console.log(`\nLibrary choice (raw, ${threads} threads)`);
console.log('| library | round trip µs | tiny tasks/s (burst) | CPU tasks/s |\n|---|---:|---:|---:|');
for (const [name, r] of lib) console.log(`| ${name} | ${fmt(r.seqUs)} | ${fmt(r.burst, 0)} | ${fmt(r.cpu)} |`);

rmSync(dir, { recursive: true, force: true });
