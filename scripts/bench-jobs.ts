/**
 * `npm run bench:jobs` — @mega/jobs against BullMQ, measured side by side in one run (issue 12 §5).
 *
 * Systems (every process forked from scripts/bench-jobs-worker.ts; this process only orchestrates):
 *   mega/js   Mega, JetStream driver: a consumer process (kernel consuming) + a producer process
 *             (kernel with serve: false, `jobs.enqueue`) + the NATS server of scripts/services.sh
 *   bullmq    BullMQ (npm latest): a consumer process (Worker) + a producer process (Queue.add) + the
 *             Redis server of scripts/services.sh — the same layout
 *   mega/mem  Mega, memory driver: in-process by nature, so ONE process enqueues and consumes (no
 *             broker); its whole CPU is counted as the consumer's
 * Workloads: a no-op job and a 1 ms job (await a 1 ms timer), at concurrency 1 and 50; the same
 * payload and job body for all; the producer keeps `--window` enqueues in flight while the consumer
 * runs (end-to-end: first enqueue → last completion).
 *
 * Primary figure: CPU time per job from /proc/<pid>/stat (utime + stime, all threads) of EVERY
 * process the job touches — producer + consumer + broker (nats-server / redis-server, pids from
 * the services.sh pid files). The broker is in the total on both sides, so a system cannot look
 * cheap by pushing its work into the server it runs on. jobs/s is printed beside it (on a shared
 * 2-core machine it swings by tens of percent; CPU per job does much less).
 * Rounds are interleaved (every round runs every workload on every system, order rotating), the
 * table shows medians and the spread (± half the min–max range, % of the median), ratios are the
 * median of per-round paired ratios. Enqueue→start latency p50/p99 comes from separate paced runs
 * (one job every 1000/--rate ms), so it is latency, not the backlog of a burst.
 *
 *   node scripts/bench-jobs.ts [--jobs 20000] [--rounds 3] [--paced 400] [--rate 400] [--window 64] [--json]
 *   (--jobs: jobs per run at concurrency 50; the concurrency-1 runs take 1/4 (no-op) and 1/16 (1 ms) of it)
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { serviceEnv } from './test/service-env.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WORKER = join(REPO, 'scripts/bench-jobs-worker.ts');
const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    paced: { type: 'string', default: '400' },
    rate: { type: 'string', default: '400' },
    window: { type: 'string', default: '64' },
    json: { type: 'boolean' },
  },
});
const JOBS = Number(values.jobs);
const ROUNDS = Number(values.rounds);
const PACED = Number(values.paced);
const RATE = Number(values.rate);
const WINDOW = Number(values.window);
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

type System = 'mega/js' | 'bullmq' | 'mega/mem';
const SYSTEMS: System[] = ['mega/js', 'bullmq', 'mega/mem'];
interface Workload {
  key: string;
  c: number;
  ms: number;
  n: number;
}
// Sized so each run takes 1-4 s on the 2-core dev box (a full run: about 2-3 minutes).
const WORKLOADS: Workload[] = [
  { key: 'noop c=1', c: 1, ms: 0, n: Math.round(JOBS / 4) },
  { key: 'noop c=50', c: 50, ms: 0, n: JOBS },
  { key: '1ms  c=1', c: 1, ms: 1, n: Math.round(JOBS / 16) },
  { key: '1ms  c=50', c: 50, ms: 1, n: JOBS },
];

// ------------------------------------------------------------------ CPU accounting

/** A reading of a whole process's CPU time: every thread, from /proc. */
interface CpuReading {
  /** utime + stime of the process (includes threads that exited), in µs, at clock-tick resolution. */
  stat: number;
  /** Σ of every live thread's on-CPU time (/proc/<pid>/task/<tid>/schedstat, ns resolution), in µs. */
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
        // the thread ended between readdir and read: the delta falls back to stat (below)
      }
    }
  } catch {
    reading.fine = Number.NaN; // no schedstat on this kernel
  }
  return reading;
}

/**
 * CPU µs between two readings. The per-thread sum is used (a 10 ms tick is 5 µs per job on a
 * 2,000-job run) unless a thread ended in between (its time would be lost): then utime + stime.
 */
function cpuDelta(a: CpuReading, b: CpuReading): number {
  const lost = Number.isNaN(a.fine) || Number.isNaN(b.fine) || [...a.tids].some((t) => !b.tids.has(t));
  return lost ? b.stat - a.stat : b.fine - a.fine;
}

/** A broker's pid from the services.sh pid file, checked against its command line. */
function brokerPid(file: string, name: string): number {
  const path = join(process.env.MEGA_SERVICES_DIR ?? '/tmp/mega-services', 'run', file);
  let pid: number;
  try {
    pid = Number(readFileSync(path, 'utf8').trim());
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(name)) throw new Error(`pid ${pid} is not ${name}`);
  } catch (error) {
    throw new Error(
      `cannot read the ${name} pid from ${path} (${(error as Error).message}): run \`bash scripts/services.sh up nats redis\`; the broker's CPU is part of the figure`,
    );
  }
  return pid;
}

function brokerVersion(pid: number): string {
  try {
    const out = execFileSync(readlinkSync(`/proc/${pid}/exe`), ['--version'], { encoding: 'utf8' });
    return /(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? out.trim();
  } catch {
    return '?';
  }
}

// ------------------------------------------------------------------ child processes

interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  request(m: Record<string, unknown>, reply: string): Promise<Record<string, unknown>>;
  next(reply: string): Promise<Record<string, unknown>>;
}

function start(name: string, args: string[]): Promise<Child> {
  return new Promise((resolveChild, reject) => {
    const proc = fork(WORKER, args, { env: { ...process.env, NODE_ENV: 'production' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const waiting = new Map<string, Array<(m: Record<string, unknown>) => void>>();
    const failures: Array<(e: Error) => void> = [];
    const next = (reply: string) =>
      new Promise<Record<string, unknown>>((ok, fail) => {
        waiting.set(reply, [...(waiting.get(reply) ?? []), ok]);
        failures.push(fail);
      });
    const child: Child = {
      name,
      proc,
      pid: proc.pid as number,
      next,
      request: (m, reply) => {
        const p = next(reply);
        proc.send(m);
        return p;
      },
    };
    proc.on('message', (m: Record<string, unknown>) => {
      if (m.cmd === 'ready') return resolveChild(child);
      if (m.cmd === 'error') {
        const e = new Error(String(m.error));
        for (const f of failures.splice(0)) f(e);
        return;
      }
      const list = waiting.get(m.cmd as string);
      const ok = list?.shift();
      if (ok) ok(m);
    });
    proc.on('exit', (code) => {
      const e = new Error(`${name} exited with ${code}`);
      reject(e);
      for (const f of failures.splice(0)) f(e);
    });
  });
}

async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode !== null) return;
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.send({ cmd: 'stop' });
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

function megaProject(driver: 'jetstream' | 'memory', natsUrl: string, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mega-bench-jobs-${driver}-`));
  const config =
    driver === 'jetstream'
      ? `{ plugins: ['@mega/bus', '@mega/jobs'], services: { buses: { default: { driver: 'nats', url: ${JSON.stringify(natsUrl)} } } }, jobs: { driver: 'jetstream', streamPrefix: '${prefix}' }, logger: { level: 'warn' } }`
      : `{ plugins: ['@mega/jobs'], jobs: { driver: 'memory' }, logger: { level: 'warn' } }`;
  const files: Record<string, string> = {
    'package.json': '{ "name": "mega-bench-jobs", "private": true, "type": "module" }\n',
    'mega.config.ts': `export default ${config};\n`,
    'apps/bench/app.config.ts': 'export default {};\n',
    // The body lives in bench-jobs-worker.ts, shared with the BullMQ processor; defaults otherwise
    // (3 retries, backoff, 30 min run timeout, lease keep-alive): what an app gets.
    'apps/bench/jobs/bench.ts': `import { MegaJob } from '@mega/jobs';
export class Bench1 extends MegaJob { static concurrency = 1; run(p) { return globalThis.__benchJob(p); } }
export class Bench50 extends MegaJob { static concurrency = 50; run(p) { return globalThis.__benchJob(p); } }
`,
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

// ------------------------------------------------------------------ one run

interface Sample {
  system: System;
  workload: string;
  round: number;
  paced: boolean;
  seconds: number;
  jobsPerSec: number;
  prod: number; // CPU µs per job
  cons: number;
  broker: number;
  total: number;
  p50: number; // ms
  p99: number;
}

interface Rig {
  consumer: Child; // mega/mem: the one process
  producer?: Child;
  brokerPid?: number;
}

let runSeq = 0;

async function runOnce(system: System, rig: Rig, w: Workload, paced: boolean, round: number): Promise<Sample> {
  const work = {
    run: ++runSeq,
    c: w.c,
    ms: w.ms,
    n: paced ? PACED : w.n,
    window: WINDOW,
    intervalMs: paced ? 1000 / RATE : 0,
  };
  const pids = { cons: rig.consumer.pid, prod: rig.producer?.pid, broker: rig.brokerPid };
  const none: CpuReading = { stat: 0, fine: 0, tids: new Set() };
  const read = () => {
    try {
      return {
        cons: readCpu(pids.cons),
        prod: pids.prod ? readCpu(pids.prod) : none,
        broker: pids.broker ? readCpu(pids.broker) : none,
      };
    } catch (error) {
      throw new Error(
        `${system} ${w.key}: a process of this run is gone (${(error as Error).message}); a broker restarted by someone else's tests (services.sh restart) cannot be measured: run the benchmark again`,
      );
    }
  };
  let finished: Record<string, unknown>;
  let before: ReturnType<typeof read>;
  let t0: number;
  if (rig.producer) {
    await rig.consumer.request({ cmd: 'expect', ...work }, 'armed');
    before = read();
    t0 = performance.now();
    const done = rig.consumer.next('finished');
    await rig.producer.request({ cmd: 'produce', ...work }, 'produced');
    finished = await done;
  } else {
    before = read();
    t0 = performance.now();
    finished = await rig.consumer.request({ cmd: 'run', ...work }, 'finished');
  }
  const seconds = (performance.now() - t0) / 1000;
  const after = read();
  if (finished.done !== work.n || finished.starts !== work.n || finished.dup || finished.stray) {
    throw new Error(`${system} ${w.key}: ${JSON.stringify(finished)} for ${work.n} jobs (lost, duplicated or stray jobs)`);
  }
  const checker = rig.producer ?? rig.consumer;
  const left = (await checker.request({ cmd: 'check', c: w.c }, 'checked')).left;
  if (left !== undefined) throw new Error(`${system} ${w.key}: the queue did not drain after the run: ${String(left)}`);
  const per = (k: 'cons' | 'prod' | 'broker') => cpuDelta(before[k], after[k]) / work.n;
  return {
    system,
    workload: w.key,
    round,
    paced,
    seconds,
    jobsPerSec: work.n / seconds,
    prod: per('prod'),
    cons: per('cons'),
    broker: per('broker'),
    total: per('prod') + per('cons') + per('broker'),
    p50: finished.p50 as number,
    p99: finished.p99 as number,
  };
}

// ------------------------------------------------------------------ statistics and report

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
/** ± half the min–max range, as % of the median. */
const spread = (xs: number[]): number => ((Math.max(...xs) - Math.min(...xs)) / 2 / median(xs)) * 100;
const withSpread = (xs: number[], digits = 0) => `${median(xs).toFixed(digits)} ±${spread(xs).toFixed(0)}%`;

async function main(): Promise<void> {
  const env = serviceEnv();
  const natsPid = brokerPid('nats.pid', 'nats-server');
  const redisPid = brokerPid('redis.pid', 'redis-server');
  const bullVersion = JSON.parse(readFileSync(join(REPO, 'node_modules/bullmq/package.json'), 'utf8')).version as string;
  const tag = `BENCH_JOBS_${process.pid}`;
  const dirs = [megaProject('jetstream', env.NATS_URL, tag), megaProject('memory', env.NATS_URL, tag)];
  const children: Child[] = [];
  const spawn = async (name: string, args: string[]) => {
    const c = await start(name, args);
    children.push(c);
    return c;
  };
  const samples: Sample[] = [];
  try {
    // Consumers first: the producers' kernel then finds the streams and consumers in place.
    const rigs: Record<System, Rig> = {
      'mega/js': { consumer: await spawn('mega consumer', ['mega-consumer', dirs[0] as string]), brokerPid: natsPid },
      bullmq: { consumer: await spawn('bullmq consumer', ['bull-consumer', env.REDIS_URL, tag]), brokerPid: redisPid },
      'mega/mem': { consumer: await spawn('mega memory', ['mega-memory', dirs[1] as string]) },
    };
    rigs['mega/js'].producer = await spawn('mega producer', ['mega-producer', dirs[0] as string]);
    rigs.bullmq.producer = await spawn('bullmq producer', ['bull-producer', env.REDIS_URL, tag]);

    const header = `bench:jobs — node ${process.version}, ${availableParallelism()} cores; BullMQ ${bullVersion} on Redis ${brokerVersion(redisPid)}; NATS ${brokerVersion(natsPid)} JetStream (file storage); ${ROUNDS} interleaved rounds, window ${WINDOW}`;
    if (!values.json) console.log(`${header}\n`);

    // Warm-up (JIT, connections, consumers): a quarter of every run, not recorded.
    for (const w of WORKLOADS) for (const s of SYSTEMS) await runOnce(s, rigs[s], { ...w, n: Math.max(50, Math.round(w.n / 4)) }, false, 0);

    // Idle broker load (our idle consumers and anyone else's traffic): reported, not subtracted.
    const idle0 = { nats: readCpu(natsPid), redis: readCpu(redisPid), t: performance.now() };
    await new Promise((r) => setTimeout(r, 2000));
    const idleS = (performance.now() - idle0.t) / 1000;
    const idle = {
      nats: cpuDelta(idle0.nats, readCpu(natsPid)) / idleS / 1000,
      redis: cpuDelta(idle0.redis, readCpu(redisPid)) / idleS / 1000,
    };

    for (let round = 1; round <= ROUNDS; round++) {
      const line: string[] = [];
      for (const w of WORKLOADS) {
        const order = SYSTEMS.map((_, i) => SYSTEMS[(i + round + WORKLOADS.indexOf(w)) % SYSTEMS.length] as System);
        for (const s of order) {
          const x = await runOnce(s, rigs[s], w, false, round);
          samples.push(x);
          line.push(`${s} ${Math.round(x.jobsPerSec)}/s ${Math.round(x.total)}µs`);
        }
      }
      // Paced latency runs (no-op job, both concurrencies).
      for (const w of WORKLOADS.filter((x) => x.ms === 0)) {
        for (const s of round % 2 ? SYSTEMS : [...SYSTEMS].reverse()) samples.push(await runOnce(s, rigs[s], w, true, round));
      }
      if (!values.json) console.log(`round ${round}: ${line.join(' | ')}`);
    }

    if (values.json) {
      console.log(JSON.stringify({ header, idleBrokerMsPerSec: idle, samples }));
      return;
    }
    const pick = (s: System, w: string, paced = false) => samples.filter((x) => x.system === s && x.workload === w && x.paced === paced);
    const col = (xs: Sample[], k: keyof Sample) => xs.map((x) => x[k] as number);

    console.log('\nCPU µs per job (median of rounds; total = producer + consumer + broker) and end-to-end jobs/s');
    console.log(
      `${'workload'.padEnd(11)}${'system'.padEnd(10)}${'jobs/s'.padStart(13)}${'prod'.padStart(7)}${'cons'.padStart(7)}${'broker'.padStart(8)}${'total µs/job'.padStart(15)}`,
    );
    for (const w of WORKLOADS) {
      for (const s of SYSTEMS) {
        const xs = pick(s, w.key);
        const inProc = s === 'mega/mem';
        console.log(
          `${(s === SYSTEMS[0] ? w.key : '').padEnd(11)}${s.padEnd(10)}${withSpread(col(xs, 'jobsPerSec')).padStart(13)}${(inProc ? '(in)' : median(col(xs, 'prod')).toFixed(0)).padStart(7)}${median(col(xs, 'cons')).toFixed(0).padStart(7)}${(inProc ? '—' : median(col(xs, 'broker')).toFixed(0)).padStart(8)}${withSpread(col(xs, 'total')).padStart(15)}`,
        );
      }
    }

    const paired = (a: System, b: System, w: string, k: keyof Sample, invert: boolean) => {
      const xa = pick(a, w);
      const xb = pick(b, w);
      return median(xa.map((x, i) => (invert ? (xb[i]?.[k] as number) / (x[k] as number) : (x[k] as number) / (xb[i]?.[k] as number))));
    };
    console.log('\nMega/JetStream vs BullMQ, per-round paired ratios (median); > 1 = Mega better');
    console.log(
      `${'workload'.padEnd(11)}${'CPU total'.padStart(11)}${'consumer'.padStart(10)}${'broker'.padStart(8)}${'jobs/s'.padStart(8)}   latency p50/p99 ms (paced ${RATE}/s): mega/js | bullmq | mega/mem`,
    );
    const goal = 1.5;
    const ratios: Array<[string, number]> = [];
    for (const w of WORKLOADS) {
      const cpu = paired('mega/js', 'bullmq', w.key, 'total', true);
      ratios.push([w.key, cpu]);
      const lat =
        w.ms === 0
          ? SYSTEMS.map((s) => {
              const xs = pick(s, w.key, true);
              return `${median(col(xs, 'p50')).toFixed(2)}/${median(col(xs, 'p99')).toFixed(2)}`;
            }).join(' | ')
          : '';
      console.log(
        `${w.key.padEnd(11)}${`${cpu.toFixed(2)}x`.padStart(11)}${`${paired('mega/js', 'bullmq', w.key, 'cons', true).toFixed(2)}x`.padStart(10)}${`${paired('mega/js', 'bullmq', w.key, 'broker', true).toFixed(2)}x`.padStart(8)}${`${paired('mega/js', 'bullmq', w.key, 'jobsPerSec', false).toFixed(2)}x`.padStart(8)}   ${lat}`,
      );
    }
    const met = ratios.filter(([, r]) => r >= goal);
    console.log(
      `\nverdict (goal: Mega/JetStream >= ${goal}x BullMQ by total CPU per job): ${met.length === ratios.length ? 'met' : 'MISSED'} — ${met.length}/${ratios.length} workloads (${ratios.map(([k, r]) => `${k.replace(/ +/g, ' ')} ${r.toFixed(2)}x`).join(', ')})`,
    );

    console.log('\nMega memory driver vs JetStream driver (memory: one process enqueues and consumes, no broker)');
    for (const w of WORKLOADS) {
      console.log(
        `  ${w.key.padEnd(10)} CPU per job: JetStream = ${paired('mega/mem', 'mega/js', w.key, 'total', true).toFixed(2)}x memory; jobs/s: memory = ${paired('mega/mem', 'mega/js', w.key, 'jobsPerSec', false).toFixed(2)}x JetStream`,
      );
    }
    console.log(`\nevery run: all jobs started once and done, none stray, queue empty afterwards (checked)`);
    console.log(
      `idle broker CPU between runs (our idle consumers + any other client): NATS ${idle.nats.toFixed(1)} ms/s, Redis ${idle.redis.toFixed(1)} ms/s`,
    );
  } finally {
    await Promise.all(children.map((c) => stopChild(c).catch(() => undefined)));
    await dropStreams(env.NATS_URL, tag).catch((error: unknown) => console.error(`could not delete streams ${tag}_*:`, error));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

async function dropStreams(url: string, tag: string): Promise<void> {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  for await (const s of jsm.streams.list()) if (s.config.name.startsWith(`${tag}_`)) await jsm.streams.delete(s.config.name);
  await nc.close();
}

await main();
